"""Score a JSONL file in-process: batches that keep groups whole, results written as they finish.

For datasets that do not fit one process, `farm rescore` distributes the same work on Ray Data.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from farm.batching import make_batches
from farm.config import FarmConfig
from farm.ensemble import Ensemble
from farm.jsonl import LineError, read_rollouts
from farm.ratelimit import QuotaBackend
from farm.wire import RewardResult, Rollout, encode_result

__all__ = ["ScoreSummary", "score_file"]


@dataclass
class ScoreSummary:
    rollouts: int = 0
    invalid_rows: int = 0
    status: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    judge_status: dict[str, Counter[str]] = field(default_factory=dict)
    reward_mean: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    elapsed_s: float = 0.0
    output: str = ""
    errors_file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if not isinstance(v, Counter | dict)}
        out["status"] = dict(self.status)
        out["flags"] = dict(self.flags)
        out["judge_status"] = {name: dict(counts) for name, counts in self.judge_status.items()}
        out["rollouts_per_s"] = round(self.rollouts / self.elapsed_s, 2) if self.elapsed_s else None
        return out


async def score_file(
    input_path: str | Path,
    output_path: str | Path,
    config: FarmConfig,
    *,
    concurrency: int = 4,
    on_progress: Callable[[int], None] | None = None,
    quotas: QuotaBackend | None = None,
) -> ScoreSummary:
    """Score every valid row of `input_path` into `output_path`; invalid rows go to `<output>.errors.jsonl`."""
    started = time.monotonic()
    summary = ScoreSummary(output=str(output_path))
    rollouts: list[Rollout] = []
    errors: list[LineError] = []
    for item in read_rollouts(input_path):
        (errors if isinstance(item, LineError) else rollouts).append(item)  # type: ignore[arg-type]
    output_path = Path(output_path)
    if errors:
        errors_path = output_path.with_name(output_path.name + ".errors.jsonl")
        with errors_path.open("w", encoding="utf-8") as handle:
            for error in errors:
                handle.write(json.dumps(asdict(error), ensure_ascii=False) + "\n")
        summary.invalid_rows = len(errors)
        summary.errors_file = str(errors_path)
    ensemble = Ensemble.from_config(config, quotas=quotas, patient=True)  # offline: never fail on quota alone
    gate = asyncio.Semaphore(concurrency)
    rewards: list[float] = []

    async def run(batch: list[Rollout]) -> list[RewardResult]:
        async with gate:
            return await ensemble.score(batch)

    try:
        with output_path.open("wb") as out:
            tasks = [asyncio.create_task(run(batch)) for batch in make_batches(rollouts, config.batch_size)]
            for finished in asyncio.as_completed(tasks):
                results = await finished
                for result in results:
                    out.write(encode_result(result) + b"\n")
                    _count(summary, result)
                    if result.reward is not None:
                        rewards.append(result.reward)
                out.flush()
                if on_progress is not None:
                    on_progress(len(results))
    finally:
        await ensemble.aclose()
    summary.reward_mean = round(sum(rewards) / len(rewards), 4) if rewards else None
    if ensemble.cache is not None:
        summary.cache_hits = ensemble.cache.stats.hits + ensemble.cache.stats.joined
        summary.cache_misses = ensemble.cache.stats.misses
    summary.elapsed_s = round(time.monotonic() - started, 3)
    return summary


def _count(summary: ScoreSummary, result: RewardResult) -> None:
    summary.rollouts += 1
    summary.status[result.status] += 1
    summary.flags.update(result.flags)
    for name, verdict in result.judges.items():
        summary.judge_status.setdefault(name, Counter())[verdict.status] += 1
        if not verdict.cached:
            summary.input_tokens += verdict.input_tokens
            summary.output_tokens += verdict.output_tokens
