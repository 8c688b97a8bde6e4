"""Admission budgets what the judges really send: listwise calls per group, and tokens against tpm."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

import deploy.admission as admission_module
from deploy.admission import Admission, Refused, calls_needed, needed
from farm.config import parse_config
from farm.wire import parse_rollout

LITE, MICRO = "amazon.nova-lite-v1:0", "amazon.nova-micro-v1:0"
KEY = (LITE, "us-east-1")
RUBRIC = {"name": "rubric", "kind": "rubric", "model": LITE, "deadline_s": 10, "criteria": [{"name": "c", "description": "Correct."}]}


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_actor(model: str, region: str) -> None:  # no quota actor here: the configured quota stands
        return None

    monkeypatch.setattr(admission_module, "_snapshot", no_actor)


def group(name: str, size: int, reference: str | None = "A: 4") -> list[Any]:
    rows = [{"id": f"{name}{i}", "prompt": "2+2?", "response": f"2+2 = 4 ({i})\nA: 4", "group": name} for i in range(size)]
    return [parse_rollout({**row, "reference": reference} if reference else row) for row in rows]


def preference(**fields: Any) -> Any:
    return parse_config({"judges": [{"name": "p", "kind": "preference", "model": MICRO, **fields}]})


def test_listwise_preference_costs_its_orders_per_group_not_pairs() -> None:
    step = [r for g in range(64) for r in group(f"q{g}", 8)]
    assert calls_needed(preference(), step) == {(MICRO, "us-east-1"): 128}  # 2 orders x 64 groups (the reference rides along)
    assert calls_needed(preference(listwise_orders=3), group("g", 8)) == {(MICRO, "us-east-1"): 3}
    assert calls_needed(preference(), group("big", 12)) == {(MICRO, "us-east-1"): 4}  # 12 > 10 items: 2 chunks per order
    # pairwise: a ring of 4 opponents (8 x 4 / 2 = 16 pairs), the reference as one more opponent (8), both orders
    assert calls_needed(preference(comparison="pairwise"), group("g", 8)) == {(MICRO, "us-east-1"): 2 * (16 + 8)}
    assert calls_needed(preference(comparison="pairwise", anchor="none"), group("g", 8)) == {(MICRO, "us-east-1"): 32}
    alone = [parse_rollout({"id": "x", "prompt": "2+2?", "response": "A: 4", "reference": "A: 4"})]
    assert calls_needed(preference(), alone) == {(MICRO, "us-east-1"): 2}  # both orders against its reference
    assert calls_needed(preference(mode="group"), alone) == {}


def test_a_call_reserves_its_input_and_its_max_tokens() -> None:
    rows = group("g", 5, reference=None)
    auto = needed(parse_config({"judges": [RUBRIC]}), rows)[KEY]
    pinned = needed(parse_config({"judges": [{**RUBRIC, "max_tokens": 64}]}), rows)[KEY]
    assert auto.calls == pinned.calls == 5
    assert auto.tokens - pinned.tokens == 5 * (512 - 64)  # the auto ceiling is what a replica may send
    wordy = [msgspec.structs.replace(r, response="x" * 4000) for r in rows]
    longer = needed(parse_config({"judges": [{**RUBRIC, "max_tokens": 64}]}), wordy)
    assert longer[KEY].tokens >= pinned.tokens + 5 * 900  # ~4 characters a token of input


def _tpm_config(max_tokens: Any = "auto", rpm: int | None = None) -> Any:
    quota: dict[str, Any] = {"tpm": 60_000}  # 1,000 tokens/s; the 10 s deadline x 0.8 headroom: 8,000 tokens
    if rpm is not None:
        quota["rpm"] = rpm
    return parse_config({"judges": [{**RUBRIC, "max_tokens": max_tokens}], "bedrock": {"quotas": {LITE: quota}}})


def test_tokens_bind_when_the_token_quota_is_the_tighter_one() -> None:
    rows = group("g", 5, reference=None)  # ~833 tokens a call reserved with the 512 ceiling: ~4,200 a request

    async def two(config: Any) -> list[Any]:
        gate = Admission(config)
        first = await gate.admit(rows)
        second = await asyncio.gather(gate.admit(rows), return_exceptions=True)
        return [first, *second, gate]

    first, second, gate = asyncio.run(two(_tpm_config(rpm=6_000)))  # 800 calls fit the deadline: requests do not bind
    assert first.calls[KEY] == 5 and first.tokens[KEY] > 4_000
    assert isinstance(second, Refused) and second.status == 503 and "tokens" in str(second) and second.retry_after_s >= 1
    assert gate.in_flight_tokens[KEY] == first.tokens[KEY] and gate.in_flight[KEY] == 5
    gate.release(first)
    assert gate.in_flight_tokens[KEY] == 0
    _, second, _ = asyncio.run(two(_tpm_config(max_tokens=64, rpm=6_000)))  # a smaller maxTokens reserves less: both fit
    assert not isinstance(second, Refused)
    with pytest.raises(Refused) as too_big:
        asyncio.run(Admission(_tpm_config()).admit(group("g", 10, reference=None)))
    assert too_big.value.status == 413 and "tokens" in str(too_big.value)


def test_requests_bind_when_rpm_is_the_tighter_one() -> None:
    config = parse_config({"judges": [RUBRIC], "bedrock": {"quotas": {LITE: {"rpm": 60, "tpm": 100_000_000}}}})
    with pytest.raises(Refused) as refused:
        asyncio.run(Admission(config).admit(group("g", 9, reference=None)))  # 9 calls at 1/s > 8 s
    assert refused.value.status == 413 and "calls" in str(refused.value) and "requests/min" in str(refused.value)


def test_a_token_rate_learned_lower_than_configured_admits_less(monkeypatch: pytest.MonkeyPatch) -> None:
    async def throttled_actor(model: str, region: str) -> dict[str, Any]:  # the quota actor learned half the quota
        return {"ceiling": 0.5, "tpm": 60_000, "rpm": 6_000}

    rows = group("g", 5, reference=None)
    assert asyncio.run(Admission(_tpm_config(rpm=6_000)).admit(rows)).calls[KEY] == 5  # ~4,200 of 8,000 tokens
    monkeypatch.setattr(admission_module, "_snapshot", throttled_actor)
    with pytest.raises(Refused) as refused:
        asyncio.run(Admission(_tpm_config(rpm=6_000)).admit(rows))  # 4,000 tokens in the deadline now
    assert refused.value.status == 413 and "at 30000 tokens/min" in str(refused.value)  # 60,000 x the learned 0.5


def test_what_the_replicas_send_now_is_what_is_budgeted() -> None:
    """Once a judge's replica has sized its `maxTokens`, admission budgets that, not the ceiling
    (read in the background: admission never waits on a replica); a replica that does not answer
    leaves the ceiling in place."""
    rows = group("g", 5, reference=None)

    async def sized(judge: str) -> dict[str, int]:
        return {"rubric": 80}

    async def silent(judge: str) -> dict[str, int]:
        raise RuntimeError("no replica yet")

    async def before_and_after(limits: Any) -> tuple[Any, Any, Any]:
        gate = Admission(_tpm_config(rpm=6_000), limits=limits)
        first = await gate.admit(rows)  # nothing known yet: the ceiling; a refresh is on its way
        gate.release(first)
        await asyncio.sleep(0.01)
        second = await gate.admit(rows)
        third = await asyncio.gather(gate.admit(rows), return_exceptions=True)
        return first, second, third[0]

    first, second, third = asyncio.run(before_and_after(sized))
    assert first.tokens[KEY] - second.tokens[KEY] == 5 * (512 - 80)
    assert not isinstance(third, Refused)  # the 8,000-token budget that held one request at the ceiling holds two
    first, second, third = asyncio.run(before_and_after(silent))
    assert first.tokens == second.tokens and isinstance(third, Refused) and third.status == 503
