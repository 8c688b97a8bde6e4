"""The quota actor's own bookkeeping, run in-process (no cluster): returned leases are not calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from actors.quota import LeasedQuotas, QuotaActor, _Lease
from farm.config import QuotaConfig
from farm.errors import JudgeUnavailableError
from farm.ratelimit import Grant

_Actor = QuotaActor.__ray_actor_class__  # the plain class behind the Ray actor


def test_returned_leases_do_not_hide_overload_as_noise() -> None:
    actor = _Actor(QuotaConfig(rpm=600, tpm=10**9).model_dump())  # no name: nothing goes to Ray's KV
    for _ in range(50):
        granted = actor.grant(1, 10)
        actor.give_back(granted.requests, 0)  # every lease expired unused but five
    for _ in range(5):
        actor.grant(1, 10)
    for _ in range(3):  # 3 429s against the 5 calls really sent: overload, not noise
        actor.throttled()
    assert actor._quota.cuts == 1


class _Method:
    def __init__(self, call: Callable[..., Any]):
        self.remote = call


class _SlowActor:
    """Stands in for the actor handle: grants arrive after `delay_s`; returns are recorded."""

    def __init__(self, delay_s: float):
        self.returned: list[tuple[int, int]] = []
        self.grant = _Method(self._grant)
        self.give_back = _Method(lambda requests, tokens: self.returned.append((requests, tokens)))
        self._delay_s = delay_s
        self.grants = 0

    async def _grant(self, requests: int, tokens: int) -> Grant:
        self.grants += 1
        await asyncio.sleep(self._delay_s)
        return Grant(requests=requests, tokens=tokens, wait_s=0.0)


def _leased(actor: _SlowActor) -> LeasedQuotas:
    config = QuotaConfig(rpm=600, tpm=60_000)
    quotas = LeasedQuotas(lambda model, region: config, lease_s=1.0)
    quotas._leases[("m", "r")] = _Lease(actor=actor, config=config)
    return quotas


def test_a_grant_that_arrives_after_the_deadline_goes_back_to_the_actor() -> None:
    actor = _SlowActor(delay_s=0.2)

    async def run() -> None:
        with pytest.raises(JudgeUnavailableError):
            await _leased(actor).acquire("m", "r", 100, time.monotonic() + 0.05)
        await asyncio.sleep(0.4)  # the actor's answer arrives

    asyncio.run(run())
    assert actor.returned == [(10, 1000)]


def test_a_grant_whose_caller_was_cancelled_goes_back_to_the_actor() -> None:
    actor = _SlowActor(delay_s=0.2)

    async def run() -> None:
        call = asyncio.ensure_future(_leased(actor).acquire("m", "r", 100, time.monotonic() + 30))
        await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.sleep(0.4)

    asyncio.run(run())
    assert actor.returned == [(10, 1000)]


def test_tokens_used_beyond_an_expired_lease_are_charged_not_forgiven() -> None:
    actor = _SlowActor(delay_s=0.0)

    async def run() -> None:
        quotas = _leased(actor)
        quotas._expire_s = 0.0
        reservation = await quotas.acquire("m", "r", 100, time.monotonic() + 30)
        quota_used = 1350  # of a 1,000-token lease
        quotas.settle("m", "r", reservation, quota_used)
        await asyncio.sleep(0.01)
        await quotas.acquire("m", "r", 100, time.monotonic() + 30)  # the old lease expired first

    asyncio.run(run())
    assert actor.returned[0] == (9, -350)  # 9 requests unused, 350 tokens owed


def test_the_cluster_actor_budgets_tokens_when_the_quota_has_no_rpm() -> None:
    actor = _Actor(QuotaConfig(tpm=60_000, burst_s=1.0).model_dump())  # 1,000 tokens a second, no request quota
    first, second = actor.grant(1, 1_000), actor.grant(1, 1_000)
    scale = actor._quota.scale  # slow start admits a share of the quota at first
    # the tokens bind (1,000 more at 1,000/s x scale); a request alone would wait a tenth of that
    assert first.wait_s == 0.0 and second.wait_s == pytest.approx(1.0 / scale, rel=0.05)
    assert actor.snapshot()["rpm"] == 600  # the never-binding request rate of a tpm-only quota


def test_leases_reserve_input_plus_max_tokens_and_settle_from_usage() -> None:
    actor = _SlowActor(delay_s=0.0)
    quotas = _leased(actor)  # 60,000 tpm: a one-second lease holds 1,000 tokens

    async def main() -> None:
        reservation = await quotas.acquire("m", "r", 700, deadline=time.monotonic() + 5)  # input 200 + maxTokens 500
        lease = quotas._leases[("m", "r")]
        assert lease.tokens == 1_000 - 700
        quotas.settle("m", "r", reservation, used_tokens=260)  # usage: 200 in + 60 out
        assert lease.tokens == 1_000 - 260
        grants = actor.grants
        await quotas.acquire("m", "r", 700, deadline=time.monotonic() + 5)  # fits in what settling returned
        assert actor.grants == grants

    asyncio.run(main())
