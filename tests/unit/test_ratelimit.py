import asyncio

import pytest

from farm.config import QuotaConfig
from farm.errors import JudgeTimeoutError
from farm.ratelimit import ModelQuota, QuotaRegistry, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_goes_into_debt_and_orders_callers():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, capacity=2, clock=clock)
    waits = [bucket.take(1) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])
    clock.now += 0.3
    assert bucket.level == pytest.approx(0.0)


def test_bucket_never_exceeds_capacity():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, capacity=5, clock=clock)
    clock.now += 100
    assert bucket.level == 5


def test_reservation_is_corrected_from_usage():
    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(rpm=60, tpm=6000, burst_s=10), clock=clock, slow_start=False)
    start = quota.tokens.level
    reservation = quota.reserve(600)
    assert quota.tokens.level == pytest.approx(start - 600)
    quota.settle(reservation, used_tokens=150)
    assert quota.tokens.level == pytest.approx(start - 150)


def test_requests_per_minute_is_the_long_run_rate():
    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(rpm=600, tpm=10**9, burst_s=1), clock=clock, slow_start=False)
    waits = [quota.reserve(1).wait_s for _ in range(110)]
    # 10 requests of burst, then one every 100 ms: request 110 goes out after 10 s
    assert waits[9] == 0.0
    assert waits[-1] == pytest.approx(10.0, abs=1e-6)


def test_sporadic_throttles_are_noise_not_overload():
    """2-5% of calls answered 429 with no real overload: the rate stays at the quota (the old
    limiter halved on every 429 episode and ran at a fifth of the quota)."""
    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(rpm=2000, tpm=10**9), clock=clock)
    for second in range(120):
        for call in range(33):
            quota.reserve(10)
            if (second * 33 + call) % 23 == 0:  # ~4.4% of calls
                quota.throttled()
        clock.now += 1.0
    assert quota.scale == 1.0 and quota.cuts == 0 and quota.throttle_events > 150


def test_overload_is_learned_in_a_step_or_two_then_probed_and_recovered():
    """Configured at 2,000 rpm against a service that serves 60: the cut goes straight to what
    was served, the rate then stays near it, and recovers fully once throttling stops."""
    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(rpm=2000, tpm=10**9, burst_s=1), clock=clock)
    served_per_s = 1.0
    credit = 0.0
    learned_at = None
    for step in range(200):  # 20 s in steps of 0.1 s, sending whatever the limiter admits
        clock.now += 0.1
        if learned_at is None and quota.requests.rate * 60 < 80:
            learned_at = step / 10
        credit = min(1.0, credit + served_per_s * 0.1)
        while quota.requests.wait_for(1) == 0:
            quota.reserve(10)
            if credit >= 1.0:
                credit -= 1.0
            else:
                quota.throttled()
    rpm_now = quota.requests.rate * 60
    assert 40 <= rpm_now <= 80, rpm_now  # learned: about 60, not 2,000 nor the 20 of a floor
    assert learned_at is not None and learned_at < 5.0  # seconds, not minutes of halving
    clock.now += 120  # throttling stops (the quota was raised): back to the configured rate
    assert quota.scale == pytest.approx(1.0)


def test_grant_leases_several_at_once():
    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(rpm=600, tpm=60_000, burst_s=1), clock=clock, slow_start=False)
    grant = quota.grant(requests=10, tokens=1000)
    assert grant.wait_s == 0.0
    assert quota.grant(requests=5, tokens=0).wait_s == pytest.approx(0.5)


def test_acquire_refuses_when_deadline_would_pass():
    clock = FakeClock()
    registry = QuotaRegistry(lambda model, region: QuotaConfig(rpm=60, tpm=10**9, burst_s=1), clock=clock)

    async def main() -> None:
        await registry.acquire("m", "r", 10, deadline=clock.now + 5)
        with pytest.raises(JudgeTimeoutError, match="quota for m in r"):
            await registry.acquire("m", "r", 10, deadline=clock.now + 0.5)

    asyncio.run(main())


def test_reconfigure_adopts_a_new_quota_without_a_fresh_burst():
    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(rpm=60_000, tpm=100_000_000, burst_s=1.0), clock=clock, slow_start=False)
    assert quota.reconfigure(QuotaConfig(rpm=60_000, tpm=100_000_000, burst_s=1.0)) is False
    assert quota.reconfigure(QuotaConfig(rpm=600, tpm=1_000_000, burst_s=1.0)) is True
    assert quota.requests.capacity == pytest.approx(10) and quota.requests.level == pytest.approx(10)  # clipped, not 1000
    waits = [quota.reserve(10).wait_s for _ in range(12)]
    assert waits[9] == 0.0 and waits[10] == pytest.approx(0.1) and waits[11] == pytest.approx(0.2)  # the new 10/s pace


def test_grant_is_capped_at_the_bucket_depth_like_reserve():
    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(rpm=600, tpm=60_000, burst_s=1), clock=clock, slow_start=False)
    grant = quota.grant(requests=500, tokens=10**9)
    assert (grant.requests, grant.tokens) == (10, 1000)  # one burst at most, never 50 s of quota
    assert grant.wait_s == 0.0


def test_restored_state_starts_empty_keeps_bookings_and_back_off():
    clock = FakeClock()
    config = QuotaConfig(rpm=600, tpm=60_000, burst_s=1)
    quota = ModelQuota(
        config, clock=clock, cooldown_s=2.0, recovery_s=10.0, min_scale=0.5, min_throttles=1, decrease_factor=0.5, slow_start=False
    )
    quota.throttled()  # overload (1 of 0 calls): scale 0.5, 5 requests/s
    for _ in range(20):
        quota.grant(1, 0)  # 5 from the (halved) burst, then 15 booked ahead at 5/s: 3 s of debt
    state = quota.export_state()
    assert state["scale"] == pytest.approx(0.5) and state["requests_booked_s"] == pytest.approx(3.0)

    restarted = ModelQuota(config, clock=clock, cooldown_s=2.0, recovery_s=10.0, min_scale=0.1, slow_start=False)
    restarted.restore_state(state, elapsed_s=0.5)
    assert restarted.scale == pytest.approx(0.5)  # still backed off, not a fresh 1.0
    assert restarted.requests.level == pytest.approx(-2.5 * 5)  # the 2.5 s still booked, no fresh burst
    assert restarted.grant(1, 0).wait_s == pytest.approx(2.5 + 0.2)

    late = ModelQuota(config, clock=clock, cooldown_s=2.0, recovery_s=10.0, min_scale=0.1, slow_start=False)
    late.restore_state(state, elapsed_s=7.0)
    assert late.requests.level == pytest.approx(0.0)  # empty, not full


def test_call_history_stays_bounded_without_any_429():
    # Weeks of calls that are never throttled: the window's history must not keep every call.
    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(rpm=600, tpm=10**9, burst_s=1), clock=clock, slow_start=False, window_s=10.0)
    for _ in range(20_000):
        clock.now += 0.1
        quota.settle(quota.reserve(10), 10)
        quota.grant(1, 10)
    assert len(quota._admitted) <= 2 * (10.0 / 0.1) + 256
    assert len(quota._settled) <= 10.0 / 0.1 + 256


def test_the_learned_ceiling_recovers_with_the_rate():
    # Admission control reads rpm x ceiling: once the rate is back at the quota, so is the ceiling,
    # or an ingress would refuse forever the work one overload episode once made too much.
    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(rpm=600, tpm=10**9, burst_s=1), clock=clock, slow_start=False)
    for _ in range(10):
        quota.reserve(10)
    for _ in range(5):
        clock.now += 0.1
        quota.throttled()
    assert quota.cuts == 1 and quota.export_state()["ceiling"] < 1.0
    clock.now += 600  # ten quiet minutes
    assert quota.scale == 1.0
    assert quota.export_state()["ceiling"] == 1.0


@pytest.mark.parametrize("cut", [False, True])
def test_a_long_idle_spell_does_not_break_the_quota(cut):
    # Slow start (or a cut) then ten idle minutes: the next call used to raise OverflowError.
    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(rpm=2000, tpm=10**9), clock=clock, min_throttles=1)
    quota.reserve(10)
    if cut:
        quota.throttled()
        assert quota.cuts == 1
    for idle_s in (600, 3600, 86_400):
        clock.now += idle_s
        assert quota.reserve(10).wait_s == 0.0 and quota.scale == 1.0


def test_token_quota_without_rpm_throttles_on_tokens_alone():
    """`rpm` is optional: a tpm-only quota admits calls until the reserved tokens run out."""
    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(tpm=60_000, burst_s=1), clock=clock, slow_start=False)  # 1,000 tokens a second
    waits = [quota.reserve(250).wait_s for _ in range(8)]
    assert waits[:4] == [0.0] * 4  # the second's 1,000 tokens: four calls of 250
    assert waits[4:] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_a_big_max_tokens_throttles_earlier():
    """Bedrock reserves input + maxTokens at the start: the same prompts with maxTokens 2,000
    instead of 200 get far fewer calls through the same tokens-per-minute quota."""
    from farm.bedrock import ConverseRequest

    def admitted_at_once(max_tokens: int) -> int:
        quota = ModelQuota(QuotaConfig(tpm=600_000, rpm=10_000, burst_s=1), clock=FakeClock(), slow_start=False)  # 10,000 tokens/s
        request = ConverseRequest(model="m", user_text="x" * 400, max_tokens=max_tokens)
        return sum(1 for _ in range(200) if quota.reserve(request.token_estimate()).wait_s == 0.0)

    small, big = admitted_at_once(200), admitted_at_once(2_000)
    assert small == 10_000 // 301  # 101 input tokens + 200 reserved per call
    assert big == 10_000 // 2_101
    assert big * 5 < small


def test_settling_returns_unused_max_tokens_and_cache_reads():
    """Settled = input + cache writes + output: unused maxTokens and cache reads come back."""
    from farm.bedrock import settled_tokens

    clock = FakeClock()
    quota = ModelQuota(QuotaConfig(tpm=60_000, burst_s=1), clock=clock, slow_start=False)
    start = quota.tokens.level
    reservation = quota.reserve(1_300)  # 1,200 prompt tokens (1,000 of them cached) + maxTokens 100
    quota.settle(reservation, settled_tokens(input_tokens=200, output_tokens=40, cache_read=1_000))
    assert quota.tokens.level == pytest.approx(start - 240)
    reservation = quota.reserve(1_300)
    quota.settle(reservation, settled_tokens(input_tokens=200, output_tokens=40, cache_write=1_000))
    assert quota.tokens.level == pytest.approx(start - 240 - 1_240)
