"""Score a JSONL file in-process: batches that keep groups whole, results written as they finish.

For datasets that do not fit one process, `farm rescore` distributes the same work on Ray Data.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from farm.batching import make_batches
from farm.cascade import escalated
from farm.config import FarmConfig
from farm.cost import PriceTable, Usage
from farm.ensemble import Ensemble
from farm.jsonl import LineError, read_rollouts
from farm.judges.base import failure_reason
from farm.maxtokens import output_report
from farm.progress import Progress
from farm.ratelimit import QuotaBackend
from farm.wire import RewardResult, Rollout, encode_result

__all__ = ["ScoreSummary", "add_cost", "batches_in_flight", "degradation", "errors_file", "read_input", "score_file"]


@dataclass
class ScoreSummary:
    rollouts: int = 0
    invalid_rows: int = 0
    status: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    judge_status: dict[str, Counter[str]] = field(default_factory=dict)
    judge_errors: dict[str, Counter[str]] = field(default_factory=dict)
    """Per judge, how often each error (first line, shortened) was the reason for a failed verdict."""
    judge_reasons: dict[str, Counter[str]] = field(default_factory=dict)
    """Per judge, failed verdicts by their typed `reason` (the closed `FailureReason` vocabulary)."""
    escalated: int = 0
    """Rollouts for which the cost cascade called a judge beyond the cheapest tier (0 with the cascade off)."""
    escalation: dict[str, Counter[str]] = field(default_factory=dict)
    """Per judge, how often the cascade ran it, did not need it, or escalated to it and why."""
    reward_mean: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    """Prompt tokens read from Bedrock's prompt cache (billed at the cache-read rate)."""
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    """What the Bedrock calls of this run cost at the price table's rates (farm.cost); None when a model has no price."""
    cost_per_rollout_usd: float | None = None
    cost_without_prompt_cache_usd: float | None = None
    """The same calls with every cached prompt token billed as plain input."""
    judge_usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per Bedrock judge: its calls' tokens (input, output, cache read, cache write) and dollars,
    with and without the prompt cache, as the Serve metrics count them per judge."""
    cache_hits: int = 0
    cache_misses: int = 0
    max_tokens: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """tokens: per Bedrock judge and kind of call, output tokens seen (p50/p99/max), the `maxTokens`
    sent now and answers asked again at the ceiling (`farm.maxtokens`): what to pin `max_tokens` to."""
    elapsed_s: float = 0.0
    output: str = ""
    errors_file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if not isinstance(v, Counter | dict)}
        out["status"] = dict(self.status)
        out["flags"] = dict(self.flags)
        out["judge_status"] = {name: dict(counts) for name, counts in self.judge_status.items()}
        out["judge_errors"] = {name: dict(counts.most_common(5)) for name, counts in self.judge_errors.items()}
        out["judge_reasons"] = {name: dict(counts) for name, counts in self.judge_reasons.items()}
        out["escalation"] = {name: dict(counts) for name, counts in self.escalation.items()}
        out["judge_usage"] = {name: dict(usage) for name, usage in self.judge_usage.items()}
        out["max_tokens"] = self.max_tokens
        out["rollouts_per_s"] = round(self.rollouts / self.elapsed_s, 2) if self.elapsed_s else None
        return out


def errors_file(output_path: Path) -> Path:
    """Where the invalid rows of a run writing `output_path` go."""
    return output_path.with_name(output_path.name + ".errors.jsonl")


def read_input(input_path: str | Path, output_path: Path) -> tuple[list[Rollout], list[LineError]]:
    """The valid rows of `input_path`, and its invalid ones, which are written to `errors_file`
    (removed when there are none: a previous run's errors never sit beside this run's results)."""
    rollouts: list[Rollout] = []
    errors: list[LineError] = []
    for item in read_rollouts(input_path):
        (errors if isinstance(item, LineError) else rollouts).append(item)  # type: ignore[arg-type]
    path = errors_file(output_path)
    path.unlink(missing_ok=True)
    if errors:
        path.write_text("".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in errors), encoding="utf-8")
    return rollouts, errors


async def score_file(
    input_path: str | Path,
    output_path: str | Path,
    config: FarmConfig,
    *,
    concurrency: int | None = None,
    progress: Progress | None = None,
    quotas: QuotaBackend | None = None,
) -> ScoreSummary:
    """Score every valid row of `input_path` into `output_path`; invalid rows go to `<output>.errors.jsonl`
    (removed when there are none, so no stale file survives a rerun). `progress` sees every batch
    of results and the client's 429 count. `concurrency`: batches scored at once (None:
    `batches_in_flight`)."""
    started = time.monotonic()
    summary = ScoreSummary(output=str(output_path))
    output_path = Path(output_path)
    rollouts, errors = read_input(input_path, output_path)
    if errors:
        summary.invalid_rows = len(errors)
        summary.errors_file = str(errors_file(output_path))
    ensemble = Ensemble.from_config(config, quotas=quotas, patient=True)  # offline: never fail on quota alone
    client = ensemble.client
    if progress is not None and client is not None:
        progress.throttled = lambda: client.stats.throttled
    gate = asyncio.Semaphore(concurrency if concurrency is not None else batches_in_flight(config))
    rewards: list[float] = []

    async def run(batch: list[Rollout]) -> list[RewardResult]:
        async with gate:
            return await ensemble.score(batch)

    try:
        out = await asyncio.to_thread(output_path.open, "wb")  # the disk off the loop that drives the judges
        with out:
            tasks = [asyncio.create_task(run(batch)) for batch in make_batches(rollouts, config.batch_size)]
            for finished in asyncio.as_completed(tasks):
                results = await finished
                lines = []
                for result in results:
                    lines.append(encode_result(result) + b"\n")
                    _count(summary, result)
                    if result.reward is not None:
                        rewards.append(result.reward)
                await asyncio.to_thread(_append, out, b"".join(lines))
                if progress is not None:
                    progress.results(results)
    finally:
        await ensemble.aclose()
    summary.reward_mean = round(sum(rewards) / len(rewards), 4) if rewards else None
    summary.max_tokens = output_report((m.config.name, m.judge) for m in ensemble.members)
    if client is not None:
        prices = PriceTable.from_config(config)
        add_cost(summary, client.stats.usage, prices)
        _price_judges(summary, config, prices)
    if ensemble.cache is not None:
        summary.cache_hits = ensemble.cache.stats.hits + ensemble.cache.stats.joined
        summary.cache_misses = ensemble.cache.stats.misses
    summary.elapsed_s = round(time.monotonic() - started, 3)
    return summary


def batches_in_flight(config: FarmConfig) -> int:
    """Batches to score at once: enough to fill the calls the Bedrock client may have in flight
    (`bedrock.concurrency()`, sized from the quotas), and at least 4. A fixed small number sends a
    step whose quota is plentiful in waves, each waiting on the judges' latency."""
    return max(4, math.ceil(config.bedrock.concurrency() / config.batch_size))


def _append(out: BinaryIO, data: bytes) -> None:
    out.write(data)
    out.flush()


def _count(summary: ScoreSummary, result: RewardResult) -> None:
    summary.rollouts += 1
    summary.status[result.status] += 1
    summary.flags.update(result.flags)
    summary.escalated += escalated(result)
    for name, reason in (result.escalation or {}).items():
        summary.escalation.setdefault(name, Counter())[reason] += 1
    for name, verdict in result.judges.items():
        summary.judge_status.setdefault(name, Counter())[verdict.status] += 1
        if verdict.status in ("failed", "timeout"):
            summary.judge_errors.setdefault(name, Counter())[_short(verdict.error or verdict.status)] += 1
            summary.judge_reasons.setdefault(name, Counter())[failure_reason(verdict) or "other"] += 1
        if not verdict.cached and (verdict.input_tokens or verdict.cache_read_tokens or verdict.cache_write_tokens):
            usage = summary.judge_usage.setdefault(name, dict.fromkeys(_TOKENS, 0))
            for kind in _TOKENS:
                usage[kind] += getattr(verdict, kind)
        if not verdict.cached:
            summary.input_tokens += verdict.input_tokens
            summary.output_tokens += verdict.output_tokens
            summary.cache_read_tokens += verdict.cache_read_tokens
            summary.cache_write_tokens += verdict.cache_write_tokens


_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _price_judges(summary: ScoreSummary, config: FarmConfig, prices: PriceTable) -> None:
    """Dollars per judge from the tokens its verdicts carry (a group's call is shared among its rollouts)."""
    judges = {j.name: j for j in config.judges}
    for name, usage in summary.judge_usage.items():
        judge = judges.get(name)
        model = getattr(judge, "model", None)
        cost = prices.cost(model, Usage(*(usage[k] for k in _TOKENS)), str(getattr(judge, "service_tier", "default"))) if model else None
        usage["cost_usd"] = None if cost is None else round(cost.usd, 6)
        usage["cost_without_prompt_cache_usd"] = None if cost is None else round(cost.uncached_usd, 6)


def add_cost(summary: ScoreSummary, usage: Mapping[tuple[str, str], Usage], prices: PriceTable) -> None:
    """Dollars for the calls in `usage` ((model, tier) -> tokens), total and per rollout."""
    costs = [prices.cost(model, tokens, tier) for (model, tier), tokens in usage.items()]
    if any(c is None for c in costs):
        return
    total = sum(c.usd for c in costs if c is not None)
    summary.cost_usd = round(total, 6)
    summary.cost_without_prompt_cache_usd = round(sum(c.uncached_usd for c in costs if c is not None), 6)
    summary.cost_per_rollout_usd = round(total / summary.rollouts, 8) if summary.rollouts else None


def _short(error: str, limit: int = 160) -> str:
    line = error.strip().splitlines()[0] if error.strip() else error
    return line if len(line) <= limit else line[: limit - 1] + "…"


def degradation(
    rollouts: int,
    status: Mapping[str, int],
    judge_status: Mapping[str, Mapping[str, int]],
    judge_errors: Mapping[str, Mapping[str, int]] | None = None,
    *,
    max_share: float = 0.0,
) -> tuple[str, bool]:
    """One line saying how much of a run was degraded and why, and whether that is too much:
    a judge that failed on every rollout it was asked to judge, or more than `max_share` of the
    rollouts `partial` or `failed`. A pipeline must not train on a silently degraded reward."""
    errors = judge_errors or {}

    def why(name: str) -> str:
        top = Counter(errors.get(name, {})).most_common(1)
        return f": {top[0][0]}" if top else ""

    for name, counts in judge_status.items():
        asked = sum(n for state, n in counts.items() if state != "skipped")
        broken = counts.get("failed", 0) + counts.get("timeout", 0)
        if asked and broken == asked:
            return f"judge {name} failed on every rollout ({broken} of {asked}){why(name)}", max_share < 1.0
    bad = status.get("partial", 0) + status.get("failed", 0)
    if not bad:
        return f"no degraded rollouts: all {rollouts} ok", False
    worst = max(judge_status, key=lambda n: judge_status[n].get("failed", 0) + judge_status[n].get("timeout", 0))
    broken = judge_status[worst].get("failed", 0) + judge_status[worst].get("timeout", 0)
    share = bad / rollouts if rollouts else 0.0
    parts = [f"{n} {state}" for state, n in sorted(status.items()) if state in ("partial", "failed") and n]
    line = f"{bad} of {rollouts} rollouts degraded ({share:.0%}: {', '.join(parts)}); judge {worst} failed on {broken}{why(worst)}"
    over = share > max_share
    limit = f"above the allowed share {max_share:g} (--max-degraded)" if over else f"within the allowed share {max_share:g}"
    return f"{line}; {limit}", over
