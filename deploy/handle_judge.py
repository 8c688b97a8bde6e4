"""A judge whose work runs in another deployment: the `Judge` protocol over a Serve handle.

This is what lets the ingress reuse `farm.ensemble.Ensemble` unchanged: gates, deadlines,
quorum and aggregation stay in `farm`, the graph only composes them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ray.exceptions import RayError
from ray.serve.exceptions import BackPressureError, RayServeException

from farm.deadlines import bounded, monotonic_to_wall
from farm.errors import JudgeUnavailableError
from farm.judges.base import failed_verdict
from farm.wire import Rollout, Verdict

__all__ = ["HandleJudge"]


class HandleJudge:
    """Calls `score` on a judge deployment; a dead replica is retried once on another."""

    def __init__(self, name: str, handle: Any, retries: int = 1, deadline_s: float | None = None):
        self.name = name
        self.handle = handle
        self.retries = retries
        self.deadline_s = deadline_s

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        batch = list(rollouts)
        last: BaseException | None = None
        deadline_at = self._deadline_at()
        for _ in range(self.retries + 1):
            try:
                if deadline_at is None:
                    return await self.handle.score.remote(batch)
                return await self.handle.score.remote(batch, deadline_at=deadline_at)
            except BackPressureError as exc:
                last = exc
                break
            except (RayError, RayServeException) as exc:
                last = exc
        error = JudgeUnavailableError(f"judge {self.name!r} unavailable: {type(last).__name__}: {str(last)[:300]}")
        return [failed_verdict(error) for _ in batch]

    def _deadline_at(self) -> float | None:
        """Wall-clock deadline for the replica: the judge's deadline counted from now (the
        ingress), never past the request's own, so queue time at the replica counts."""
        if self.deadline_s is None:
            return None
        return monotonic_to_wall(bounded(time.monotonic() + self.deadline_s))

    async def aclose(self) -> None:
        return None
