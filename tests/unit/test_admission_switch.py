"""`serve.admission: false` (for benchmarks only) accepts what admission control would refuse."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import deploy.admission as admission_module
from deploy.admission import Admission, Refused
from farm.config import parse_config
from farm.wire import parse_rollout

LITE = "amazon.nova-lite-v1:0"


def _config(admission: bool) -> Any:
    return parse_config(
        {
            "judges": [
                {
                    "name": "rubric",
                    "kind": "rubric",
                    "model": LITE,
                    "deadline_s": 10,
                    "criteria": [{"name": "c", "description": "Correct."}],
                }
            ],
            "bedrock": {"quotas": {LITE: {"rpm": 60, "tpm": 100000}}},
            "serve": {"admission": admission},
        }
    )


ROLLOUTS = [parse_rollout({"id": f"r{i}", "prompt": "2+2?", "response": "A: 4"}) for i in range(50)]


def test_admission_on_refuses_what_the_quota_cannot_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_actor(model: str, region: str) -> None:  # no cluster here: the configured quota stands
        return None

    monkeypatch.setattr(admission_module, "_snapshot", no_actor)
    with pytest.raises(Refused) as refused:
        asyncio.run(Admission(_config(True)).admit(ROLLOUTS))  # 50 calls at 1/s, 8 s budget
    assert refused.value.status == 413


def test_admission_off_accepts_everything_and_books_nothing() -> None:
    gate = Admission(_config(False))
    ticket = asyncio.run(gate.admit(ROLLOUTS))
    assert ticket.calls == {} and not gate.in_flight
    gate.release(ticket)
