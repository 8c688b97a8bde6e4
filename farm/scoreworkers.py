"""`farm score --workers N`: one file spread over N processes when one process is CPU-bound.

With quota to spare, a step is bounded by the CPU one process spends per Bedrock call (SigV4,
botocore, HTTP, prompts, screening, group ranking), not by the quota or the judges' latency.
Worker processes (forked, so they start with the parent's imports) each score a shard of whole
groups (a preference judge ranks a group within one process) with `score_file`, and the parent
joins their results and summaries.

The quota is split, not copied: each worker limits itself to 1/N (rounded down) of every
model's rpm and tpm, of the default quota and of `max_concurrency`, so together they never
admit more than the configured quota. A cluster's shared quota (RAY_ADDRESS) is not split here:
`farm rescore --workers N` spreads work over actors that lease from it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from farm.batching import make_batches
from farm.config import FarmConfig, QuotaConfig
from farm.errors import ConfigError
from farm.progress import Progress
from farm.scorefile import ScoreSummary, errors_file, read_input, score_file
from farm.wire import Rollout

__all__ = ["merge_summaries", "score_file_workers", "shard_rollouts", "split_quota"]

_REWARD = msgspec.json.Decoder(dict[str, Any])


def split_quota(config: FarmConfig, workers: int) -> FarmConfig:
    """`config` with every quota (and `max_concurrency`) divided by `workers`, rounded down, so
    that `workers` processes holding it together stay within the original quota."""
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        return config
    bedrock = config.bedrock

    def share(quota: QuotaConfig, key: str) -> QuotaConfig:
        if quota.tpm < workers or (quota.rpm is not None and quota.rpm < workers):
            raise ConfigError(f"bedrock quota {key} (tpm {quota.tpm}, rpm {quota.rpm}) is too small to split over {workers} workers")
        return quota.model_copy(update={"tpm": quota.tpm // workers, "rpm": None if quota.rpm is None else quota.rpm // workers})

    update: dict[str, Any] = {
        "quotas": {key: share(quota, key) for key, quota in bedrock.quotas.items()},
        "default_quota": share(bedrock.default_quota, "default_quota"),
    }
    if bedrock.max_concurrency is not None:
        update["max_concurrency"] = max(1, bedrock.max_concurrency // workers)
    return config.model_copy(update={"bedrock": bedrock.model_copy(update=update)})


def shard_rollouts(rollouts: Sequence[Rollout], workers: int) -> list[list[Rollout]]:
    """At most `workers` shards of whole groups (a rollout without a group is its own unit), each
    unit to the shard with the fewest rollouts so far: shards even to within one group."""
    units = make_batches(rollouts, 1)  # batches of one unit each: groups kept whole, in file order
    shards: list[list[Rollout]] = [[] for _ in range(max(1, min(workers, len(units))))]
    for unit in units:
        min(shards, key=len).extend(unit)
    return shards


def merge_summaries(parts: Sequence[ScoreSummary], output: str, rewards: Sequence[float]) -> ScoreSummary:
    """One summary for the whole file from the workers' summaries; `rewards`: every result's
    reward (the mean is taken over all of them, not averaged over shards)."""
    out = ScoreSummary(output=output)
    counters = ("judge_status", "judge_errors", "judge_reasons", "escalation")
    costs = [p.cost_usd for p in parts]
    uncached = [p.cost_without_prompt_cache_usd for p in parts]
    for part in parts:
        out.rollouts += part.rollouts
        out.escalated += part.escalated
        out.status.update(part.status)
        out.flags.update(part.flags)
        for name in counters:
            merged: dict[str, Counter[str]] = getattr(out, name)
            for judge, counts in getattr(part, name).items():
                merged.setdefault(judge, Counter()).update(counts)
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_hits", "cache_misses"):
            setattr(out, name, getattr(out, name) + getattr(part, name))
        for judge, usage in part.judge_usage.items():
            _add_numbers(out.judge_usage.setdefault(judge, {}), usage)
        for judge, kinds in part.max_tokens.items():
            for kind, report in kinds.items():
                _join_output_report(out.max_tokens.setdefault(judge, {}).setdefault(kind, {}), report)
    out.reward_mean = round(sum(rewards) / len(rewards), 4) if rewards else None
    if parts and all(c is not None for c in costs):
        out.cost_usd = round(sum(c for c in costs if c is not None), 6)
        out.cost_per_rollout_usd = round(out.cost_usd / out.rollouts, 8) if out.rollouts else None
    if parts and all(c is not None for c in uncached):
        out.cost_without_prompt_cache_usd = round(sum(c for c in uncached if c is not None), 6)
    return out


def _add_numbers(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    """Sum per-judge token and dollar counts; a None (a model with no price) stays None."""
    for key, value in part.items():
        if key not in into:
            into[key] = value
        elif into[key] is None or value is None:
            into[key] = None
        else:
            into[key] = round(into[key] + value, 6) if isinstance(value, float) else into[key] + value


_OUTPUT_SUMS = ("answers", "cut_off", "retried_at_ceiling", "calls_at_ceiling")


def _join_output_report(into: dict[str, Any], part: Mapping[str, Any]) -> None:
    """Counts add up; the quantiles and limits of separate workers cannot be pooled exactly, so the
    joined report keeps the largest (what to pin `max_tokens` to must cover every worker)."""
    if not into:
        into.update(part)
        return
    calls = into["answers"] + into["cut_off"] + part["answers"] + part["cut_off"]
    sent = into["mean_max_tokens_sent"] * (into["answers"] + into["cut_off"]) + part["mean_max_tokens_sent"] * (
        part["answers"] + part["cut_off"]
    )
    for key, value in part.items():
        if key in _OUTPUT_SUMS:
            into[key] += value
        elif isinstance(value, (int, float)) and isinstance(into.get(key), (int, float)):
            into[key] = max(into[key], value)
    into["mean_max_tokens_sent"] = round(sent / max(1, calls), 1)


class _Relay(Progress):
    """A worker's progress: every batch's counts go to the parent, which draws the line."""

    def __init__(self, channel: Any, index: int):
        super().__init__("worker", stream=None)
        self._channel, self._index = channel, index

    def advance(self, count: int = 1, failed: int = 0) -> None:
        throttled = self.throttled() if self.throttled is not None else 0
        self._channel.put((self._index, count, failed, throttled))


_CHANNEL: Any = None
"""In a worker process: the queue its progress goes to (handed over when the process starts)."""


def _attach(channel: Any) -> None:
    global _CHANNEL
    _CHANNEL = channel


def _work(index: int, shard: str, out: str, config: FarmConfig, concurrency: int | None) -> ScoreSummary:
    """One worker process: score its shard file into its own output."""
    return asyncio.run(score_file(shard, out, config, concurrency=concurrency, progress=_Relay(_CHANNEL, index)))


def score_file_workers(
    input_path: str | Path,
    output_path: str | Path,
    config: FarmConfig,
    *,
    workers: int,
    concurrency: int | None = None,
    progress: Progress | None = None,
) -> ScoreSummary:
    """`score_file` over up to `workers` processes (no more than there are groups), each with its
    share of the quota (`split_quota`). Invalid rows are reported as `score_file` reports them,
    with their line in `input_path`."""
    started = time.monotonic()
    output_path = Path(output_path)
    rollouts, errors = read_input(input_path, output_path)
    shards = shard_rollouts(rollouts, workers)
    share = split_quota(config, len(shards))  # fewer units than workers: fewer, larger shares
    # the workers start from the parent's imports (fork): aiobotocore too, which the first call would import
    import aiobotocore.config  # noqa: F401
    import aiobotocore.session  # noqa: F401

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    channel = context.Queue()
    throttled = [0] * len(shards)
    if progress is not None:
        progress.throttled = lambda: sum(throttled)
    with tempfile.TemporaryDirectory(prefix="farm-workers-", dir=output_path.parent) as tmp:
        paths = []
        for k, shard in enumerate(shards):
            path = Path(tmp) / f"shard-{k}.jsonl"
            path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in shard))
            paths.append((str(path), str(Path(tmp) / f"out-{k}.jsonl")))
        done = threading.Event()
        relay = threading.Thread(target=_drain, args=(channel, progress, throttled, done), name="farm-workers-progress", daemon=True)
        relay.start()
        try:
            with ProcessPoolExecutor(max_workers=len(shards), mp_context=context, initializer=_attach, initargs=(channel,)) as pool:
                futures = [pool.submit(_work, k, shard, out, share, concurrency) for k, (shard, out) in enumerate(paths)]
                parts = [f.result() for f in futures]
        finally:
            done.set()
            relay.join(timeout=5)
        rewards: list[float] = []
        with output_path.open("wb") as joined:
            for _, out in paths:
                data = Path(out).read_bytes()
                joined.write(data)
                rewards += [r for line in data.splitlines() if line and (r := _REWARD.decode(line).get("reward")) is not None]
    summary = merge_summaries(parts, str(output_path), rewards)
    summary.invalid_rows = len(errors)
    summary.errors_file = str(errors_file(output_path)) if errors else None
    summary.elapsed_s = round(time.monotonic() - started, 3)
    return summary


def _drain(channel: Any, progress: Progress | None, throttled: list[int], done: threading.Event) -> None:
    """Move the workers' batch counts onto the parent's progress line until the pool is done."""
    while True:
        try:
            item = channel.get(timeout=0.1)
        except queue.Empty:
            if done.is_set():
                return
            continue
        index, count, failed, seen = item
        throttled[index] = max(throttled[index], seen)
        if progress is not None:
            progress.advance(count, failed)
