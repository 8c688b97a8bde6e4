"""Quotas hold at the service: the emulator never sees more than the quota plus a small burst."""

import asyncio
import time

import pytest

from farm.bedrock import ConverseClient, ConverseRequest
from farm.config import QuotaConfig, RetryConfig
from farm.ratelimit import QuotaRegistry
from tests.conftest import fast_bedrock, max_in_window

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "amazon.nova-micro-v1:0"


def offer(n: int, quota: QuotaConfig, deadline_s: float = 60.0):
    config = fast_bedrock(retry=RetryConfig(max_attempts=12, base_delay_s=0.05, max_delay_s=1.0))

    async def main():
        client = ConverseClient(config, QuotaRegistry(lambda m, r: quota))
        deadline = time.monotonic() + deadline_s
        try:
            results = await asyncio.gather(
                *(client.converse(ConverseRequest(model=MODEL, user_text=f"q{i}", max_tokens=64), deadline=deadline) for i in range(n)),
                return_exceptions=True,
            )
        finally:
            await client.aclose()
        return results, client

    return asyncio.run(main())


def test_farm_stays_within_quota_under_excess_load(aws_env, report):
    aws_env.update(rpm=600, burst_s=2.0, latency_ms=50)
    results, client = offer(60, QuotaConfig(rpm=600, tpm=10_000_000, burst_s=1.0))
    stats = aws_env.stats()[MODEL]
    failures = [r for r in results if isinstance(r, BaseException)]
    times = stats.admitted_at
    span = times[-1] - times[0]
    peak = max_in_window(times, 1.0)
    report(f"quota 600 rpm, 60 calls at once: {stats.received} seen, {stats.throttled} throttled, span {span:.2f}s, peak/1s {peak}")
    assert not failures
    assert stats.received == 60 and stats.throttled == 0
    # 10/s sustained plus the 10-request burst, never more in any one-second window
    assert peak <= 10 + 10 + 2  # rate + burst, counted over a closed one-second window
    assert span >= (60 - 10) / 10 - 0.5


def test_throttling_backs_off_instead_of_storming(aws_env, report):
    """The farm believes it has 4x the real quota: 429s teach it the real rate, and every call succeeds."""
    aws_env.update(rpm=300, burst_s=1.0, latency_ms=20)
    results, client = offer(60, QuotaConfig(rpm=1200, tpm=10_000_000, burst_s=1.0))
    stats = aws_env.stats()[MODEL]
    failures = [r for r in results if isinstance(r, BaseException)]
    seen = f"{stats.received} seen, {stats.throttled} throttled, {client.stats.attempts} attempts"
    report(f"AIMD: quota 300 rpm, farm configured 1200 rpm: {seen}")
    assert not failures, failures[:3]
    assert stats.admitted == 60
    # a retry storm would send several attempts per call; AIMD keeps 429s well below the calls made
    assert stats.throttled < 60


def test_a_tokens_only_quota_holds_at_the_service(aws_env, report):
    """No rpm, only tpm: the farm reserves input + maxTokens per call, settles from usage, and the
    emulator (which throttles by tokens the same way) never answers 429."""
    aws_env.update(rpm=100_000, tpm=120_000, burst_s=1.0, latency_ms=50)  # 2,000 tokens a second
    results, client = offer(90, QuotaConfig(tpm=120_000, burst_s=1.0), deadline_s=30)
    stats = aws_env.stats()[MODEL]
    failures = [r for r in results if isinstance(r, BaseException)]
    report(f"tpm-only quota 120k: {stats.received} seen, {stats.throttled} throttled, {client.stats.attempts} attempts")
    assert not failures, failures[:3]
    assert stats.admitted == 90 and stats.throttled == 0
    # each call reserves ~66 tokens (input + maxTokens 64) but uses ~25: settling returned the rest
    used = stats.input_tokens + stats.output_tokens
    assert used < 90 * 66 / 2
