"""A judge whose work runs in another deployment: the `Judge` protocol over a Serve handle.

This is what lets the ingress reuse `farm.ensemble.Ensemble` unchanged: gates, deadlines,
quorum and aggregation stay in `farm`, the graph only composes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.exceptions import RayError
from ray.serve.exceptions import BackPressureError, RayServeException

from farm.errors import JudgeUnavailableError
from farm.judges.base import failed_verdict
from farm.wire import Rollout, Verdict

__all__ = ["HandleJudge"]


class HandleJudge:
    """Calls `score` on a judge deployment; a dead replica is retried once on another."""

    def __init__(self, name: str, handle: Any, retries: int = 1):
        self.name = name
        self.handle = handle
        self.retries = retries

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        batch = list(rollouts)
        last: BaseException | None = None
        for _ in range(self.retries + 1):
            try:
                return await self.handle.score.remote(batch)
            except BackPressureError as exc:
                last = exc
                break
            except (RayError, RayServeException) as exc:
                last = exc
        error = JudgeUnavailableError(f"judge {self.name!r} unavailable: {type(last).__name__}: {str(last)[:300]}")
        return [failed_verdict(error) for _ in batch]

    async def aclose(self) -> None:
        return None
