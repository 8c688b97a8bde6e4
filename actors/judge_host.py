"""Hosts one configured judge with the resources it owns: a Bedrock client, leases, a cache.

Used by the Serve judge deployments and, as `JudgeActor`, by offline jobs; it holds no
scoring logic of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ray

from actors.quota import LeasedQuotas
from farm.bedrock import ClientStats, ConverseClient
from farm.cache import VerdictCache
from farm.config import FarmConfig, JudgeConfig, parse_config
from farm.errors import ConfigError
from farm.judges import Judge, build_judge, needs_bedrock
from farm.wire import Rollout, Verdict

__all__ = ["JudgeActor", "JudgeHost"]


class JudgeHost:
    def __init__(self, farm_config: dict[str, Any] | FarmConfig, judge_name: str):
        config = farm_config if isinstance(farm_config, FarmConfig) else parse_config(farm_config, source="farm config")
        matches = [j for j in config.judges if j.name == judge_name]
        if not matches:
            raise ConfigError(f"no judge named {judge_name!r} in the config (have {[j.name for j in config.judges]})")
        self.config: JudgeConfig = matches[0]
        self.cache = VerdictCache(config.cache.max_entries, enabled=config.cache.enabled)
        self.quotas: LeasedQuotas | None = None
        self.client: ConverseClient | None = None
        if needs_bedrock(self.config):
            self.quotas = LeasedQuotas(config.quota_for)
            self.client = ConverseClient(config.bedrock, self.quotas)
        self.judge: Judge = build_judge(self.config, self.client, self.cache)

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        return await self.judge.score(rollouts)

    def client_stats(self) -> ClientStats | None:
        return self.client.stats if self.client is not None else None

    async def aclose(self) -> None:
        await self.judge.aclose()
        if self.client is not None:
            await self.client.aclose()
        if self.quotas is not None:
            self.quotas.release_all()


# ray's overloads for remote(**options) list task options only; max_concurrency is a valid actor option
JudgeActor = ray.remote(max_concurrency=1000)(JudgeHost)  # type: ignore[call-overload]
"""An async actor hosting one judge, for jobs outside Serve (offline rescoring)."""
