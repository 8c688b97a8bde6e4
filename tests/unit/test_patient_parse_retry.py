"""Offline (patient) scoring: a parse retry after a long quota wait still gets the judge's budget."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from farm.bedrock import ConverseReply, ConverseRequest
from farm.errors import ParseError
from farm.judges.converse_call import ask


class _PatientClient:
    """Answers garbage first, after a quota wait longer than the judge's whole budget."""

    patient = True

    def __init__(self) -> None:
        self.left_at_call: list[float] = []

    async def converse(self, request: ConverseRequest, *, deadline: float, region: str | None = None) -> ConverseReply:
        self.left_at_call.append(deadline - time.monotonic())
        if len(self.left_at_call) == 1:
            await asyncio.sleep(1.5)  # waited for quota past the judge's 1 s budget: offline, that is fine
            return ConverseReply("not json", None, "end_turn", 1, 1, 1.0, 1)
        return ConverseReply('{"ok": true}', None, "end_turn", 1, 1, 1.0, 1)


def _parse(payload: Any) -> bool:
    if not isinstance(payload, dict):
        raise ParseError("not an object")
    return True


def test_a_patient_parse_retry_is_not_sent_with_a_spent_deadline() -> None:
    client = _PatientClient()

    def build() -> tuple[Any, ConverseRequest]:
        return SimpleNamespace(truncated=False), ConverseRequest(model="m", user_text="u")

    async def run() -> Any:
        return await ask(client, build, _parse, parse_retries=1, deadline=time.monotonic() + 1.0, region=None)  # type: ignore[arg-type]

    answer = asyncio.run(run())
    assert answer.value is True
    assert len(client.left_at_call) == 2 and client.left_at_call[1] > 0.5  # a fresh budget, not 1 s - 1.5 s
