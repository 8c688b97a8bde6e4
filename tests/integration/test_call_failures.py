"""Converse calls that end early: a deadline passed before any attempt, a caller that left."""

from __future__ import annotations

import asyncio
import time

import pytest

from farm.bedrock import ConverseClient, ConverseRequest
from farm.config import QuotaConfig
from farm.errors import JudgeTimeoutError
from farm.judges.base import failed_verdict
from farm.ratelimit import QuotaRegistry, Reservation
from tests.conftest import fast_bedrock

pytestmark = pytest.mark.integration

MODEL = "amazon.nova-lite-v1:0"


class _LateQuota(QuotaRegistry):
    """A quota that admits the call only once the deadline has passed (a long queue)."""

    async def acquire(self, model: str, region: str, tokens: int, deadline: float) -> Reservation:
        reservation = await super().acquire(model, region, tokens, deadline)
        await asyncio.sleep(max(0.0, deadline - time.monotonic()) + 0.01)
        return reservation


def test_a_deadline_passed_before_any_attempt_says_so(aws_env):
    config = fast_bedrock()

    async def main():
        client = ConverseClient(config, _LateQuota(lambda m, r: config.default_quota))
        try:
            await client._get_client()  # the session is set up before the clock starts
            await client.converse(ConverseRequest(model=MODEL, user_text="hi"), deadline=time.monotonic() + 0.5)
        finally:
            await client.aclose()

    with pytest.raises(JudgeTimeoutError) as caught:
        asyncio.run(main())
    assert failed_verdict(caught.value).reason == "deadline"  # time spent queued, told apart from a slow model
    message = str(caught.value)
    assert "before attempt 1 could be sent" in message and "last error: none" in message
    assert not message.rstrip().endswith(":")  # never an empty reason
    assert aws_env.stats().get(MODEL) is None  # nothing was sent


def test_a_caller_that_leaves_mid_call_returns_its_tokens(aws_env):
    aws_env.update(latency_ms=2000)
    quota = QuotaConfig(rpm=600, tpm=60_000, burst_s=1.0)
    config = fast_bedrock(default_quota=quota)
    frozen = time.monotonic()
    registry = QuotaRegistry(lambda m, r: quota, clock=lambda: frozen)  # no refill: levels show exactly what is held

    async def main():
        client = ConverseClient(config, registry)
        try:
            call = asyncio.ensure_future(
                client.converse(ConverseRequest(model=MODEL, user_text="hi", max_tokens=500), deadline=frozen + 30)
            )
            while aws_env.stats().get(MODEL) is None:  # noqa: ASYNC110 - the emulator's counters: no event to wait on
                await asyncio.sleep(0.01)
            held = registry.get(MODEL, "us-east-1").tokens.level
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            return held, registry.get(MODEL, "us-east-1").tokens.level
        finally:
            await client.aclose()

    held, after = asyncio.run(main())
    assert held < 1000 - 500
    assert after == 1000
