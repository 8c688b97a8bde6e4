"""The Serve deployment that hosts one judge; replicas scale per judge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray import serve

from actors.judge_host import JudgeHost
from deploy.metrics import FarmMetrics
from farm.wire import Rollout, Verdict

__all__ = ["JudgeDeployment"]


@serve.deployment
class JudgeDeployment:
    def __init__(self, farm_config: dict[str, Any], judge_name: str, app_name: str = "reward-farm"):
        self.host = JudgeHost(farm_config, judge_name)
        self.name = judge_name
        self.metrics = FarmMetrics(app_name)
        self._throttles_reported = 0

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        verdicts = await self.host.score(rollouts)
        stats = self.host.client_stats()
        if stats is not None and stats.throttled > self._throttles_reported:
            self.metrics.record_throttles(self.name, stats.throttled - self._throttles_reported)
            self._throttles_reported = stats.throttled
        return verdicts

    def stats(self) -> dict[str, Any]:
        """Client counters of this replica (for operators and tests)."""
        stats = self.host.client_stats()
        cache = self.host.cache.stats
        return {
            "judge": self.name,
            "calls": stats.calls if stats else 0,
            "attempts": stats.attempts if stats else 0,
            "throttled": stats.throttled if stats else 0,
            "cache_hits": cache.hits + cache.joined,
            "cache_misses": cache.misses,
        }

    def actor(self) -> Any:
        """This replica's actor handle (for fault-injection tests and operators' tooling)."""
        import ray

        return ray.get_runtime_context().current_actor

    def __del__(self) -> None:
        if self.host.quotas is not None:
            self.host.quotas.release_all()
