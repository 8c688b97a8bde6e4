"""The Serve deployment that hosts one judge; replicas scale per judge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from ray import serve

from actors.judge_host import JudgeHost
from deploy.metrics import FarmMetrics
from farm.deadlines import request_deadline, wall_to_monotonic
from farm.errors import ConfigError, DeadlineError
from farm.judges import is_local
from farm.judges.base import failed_verdict
from farm.wire import Rollout, Verdict

__all__ = ["JudgeDeployment", "LocalJudgeDeployment"]


@serve.deployment
class JudgeDeployment:
    def __init__(self, farm_config: dict[str, Any], judge_name: str, app_name: str = "reward-farm"):
        self.host = JudgeHost(farm_config, judge_name)
        self.name = judge_name
        self.metrics = FarmMetrics(app_name)
        self._throttles_reported = 0
        self._retries_reported: dict[str, int] = {}
        self.requests = 0
        self.rollouts = 0

    async def score(self, rollouts: Sequence[Rollout], deadline_at: float | None = None) -> list[Verdict]:
        """`deadline_at`: the wall-clock moment the ingress must answer by; time queued here counts.
        One call per request: the ingress ships a request's rollouts here once, as one batch."""
        self.requests += 1
        self.rollouts += len(rollouts)
        if deadline_at is not None:
            deadline = wall_to_monotonic(deadline_at)
            if deadline <= time.monotonic():
                late = DeadlineError(f"judge {self.name!r}: the request's deadline passed while it queued for this replica")
                return [failed_verdict(late) for _ in rollouts]
            with request_deadline(deadline):
                verdicts = await self.host.score(rollouts)
        else:
            verdicts = await self.host.score(rollouts)
        stats = self.host.client_stats()
        if stats is not None and stats.throttled > self._throttles_reported:
            self.metrics.record_throttles(self.name, stats.throttled - self._throttles_reported)
            self._throttles_reported = stats.throttled
        sizer = getattr(self.host.judge, "output_sizer", None)  # tokens: maxTokens per kind of call
        if sizer is not None:
            self._retries_reported = self.metrics.record_max_tokens(self.name, sizer.limits(), self._retries_reported)
        return verdicts

    def stats(self) -> dict[str, Any]:
        """Client counters of this replica (for operators and tests)."""
        stats = self.host.client_stats()
        cache = self.host.cache.stats
        return {
            "judge": self.name,
            "requests": self.requests,
            "rollouts": self.rollouts,
            "calls": stats.calls if stats else 0,
            "attempts": stats.attempts if stats else 0,
            "throttled": stats.throttled if stats else 0,
            "cache_hits": cache.hits + cache.joined,
            "cache_misses": cache.misses,
            "max_tokens": sizer.report() if (sizer := getattr(self.host.judge, "output_sizer", None)) is not None else {},
        }

    def actor(self) -> Any:
        """This replica's actor handle (for fault-injection tests and operators' tooling)."""
        import ray

        return ray.get_runtime_context().current_actor

    def __del__(self) -> None:
        if self.host.quotas is not None:
            self.host.quotas.release_all()


@serve.deployment
class LocalJudgeDeployment:
    """A local (torch) judge with Serve dynamic batching: concurrent requests share forward passes.

    Each request's rollouts enter the `@serve.batch` queue one by one, so a batch fills from
    many callers; batch size and wait change at runtime through `reconfigure`.
    """

    def __init__(self, farm_config: dict[str, Any], judge_name: str, app_name: str = "reward-farm"):
        self.host = JudgeHost(farm_config, judge_name)  # the model loads here, once per replica
        self.name = judge_name
        self.batch_sizes: list[int] = []
        self.reconfigure({})

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        config = self.host.config
        if not is_local(config):
            raise ConfigError(f"judge {self.name!r} is not a local judge (kind {config.kind!r}); it has no batch settings")
        # ray types @serve.batch's result as the plain method; the batching wrapper it returns has the setters
        self._score_batch.set_max_batch_size(int(user_config.get("max_batch_size", config.max_batch_size)))  # type: ignore[attr-defined]
        self._score_batch.set_batch_wait_timeout_s(float(user_config.get("batch_wait_timeout_s", config.batch_wait_timeout_s)))  # type: ignore[attr-defined]

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        return list(await asyncio.gather(*(self._score_batch(r) for r in rollouts)))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.01)
    async def _score_batch(self, rollouts: list[Rollout]) -> list[Verdict]:
        self.batch_sizes.append(len(rollouts))
        return await self.host.score(rollouts)

    def seen_batch_sizes(self) -> list[int]:
        """Sizes of the batches run so far (for tests and tuning)."""
        return list(self.batch_sizes)

    def info(self) -> dict[str, Any]:
        import torch

        judge = self.host.judge
        return {"judge": self.name, "device": getattr(judge, "device", None), "torch_threads": torch.get_num_threads()}

    def actor(self) -> Any:
        import ray

        return ray.get_runtime_context().current_actor
