"""A fake judge for users' own tests: scripted scores, failures and delays, no network."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from farm.errors import JudgeError
from farm.judges.base import failed_verdict
from farm.wire import Rollout, Verdict

__all__ = ["FakeJudge", "JudgeError"]


class FakeJudge:
    """Scores with `score_fn(rollout)`; a returned exception becomes a failed verdict,
    e.g. `FakeJudge("down", lambda r: JudgeError("Bedrock unavailable"))`.

    `delay_s` simulates latency; `calls` records every batch it was given.
    """

    def __init__(
        self,
        name: str,
        score_fn: Callable[[Rollout], float | BaseException] = lambda _r: 1.0,
        *,
        delay_s: float = 0.0,
    ):
        self.name = name
        self._score_fn = score_fn
        self._delay_s = delay_s
        self.calls: list[list[str]] = []

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        self.calls.append([r.id for r in rollouts])
        if self._delay_s:
            await asyncio.sleep(self._delay_s)
        out = []
        for rollout in rollouts:
            value = self._score_fn(rollout)
            if isinstance(value, BaseException):
                out.append(failed_verdict(value))
            else:
                out.append(Verdict(score=float(value), status="ok"))
        return out

    async def aclose(self) -> None:
        return None
