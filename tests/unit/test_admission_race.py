"""Requests that arrive together are checked against each other's calls, not the same backlog."""

from __future__ import annotations

import asyncio

import pytest

import deploy.admission as admission_module
from deploy.admission import Admission, Refused
from farm.config import parse_config
from farm.wire import parse_rollout

LITE, MICRO = "amazon.nova-lite-v1:0", "amazon.nova-micro-v1:0"


def _judge(name: str, model: str) -> dict[str, object]:
    return {"name": name, "kind": "rubric", "model": model, "deadline_s": 10, "criteria": [{"name": "c", "description": "Correct."}]}


def test_concurrent_requests_cannot_all_pass_while_the_rates_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    async def slow_actor(model: str, region: str) -> None:  # the quota actor answers after a moment
        await asyncio.sleep(0.01)
        return None

    monkeypatch.setattr(admission_module, "_snapshot", slow_actor)
    quotas = {LITE: {"rpm": 60, "tpm": 100000}, MICRO: {"rpm": 6000, "tpm": 1000000}}
    config = parse_config({"judges": [_judge("a", LITE), _judge("b", MICRO)], "bedrock": {"quotas": quotas}})
    gate = Admission(config)  # lite: 1 call/s, 8 s budget, so 5 + 5 calls do not fit (micro has room)
    batch = [parse_rollout({"id": f"r{i}", "prompt": "2+2?", "response": "A: 4"}) for i in range(5)]

    async def both() -> list[object]:
        return await asyncio.gather(gate.admit(batch), gate.admit(batch), return_exceptions=True)

    outcomes = asyncio.run(both())
    refused = [o for o in outcomes if isinstance(o, Refused)]
    assert len(refused) == 1 and refused[0].status == 503
    assert gate.in_flight[(LITE, "us-east-1")] == 5  # only the admitted request's calls are booked
