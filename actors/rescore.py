"""Offline rescoring on Ray: scoring actors on any node parse, score and write fixed chunks of rows
to an `OutputStore` (local, shared path or `s3://`); the driver streams raw rows to them, keeps the
resumable record of what is done (farm.offline.plan) and retries rows whose judges failed.

Inside an actor, parsing and Parquet encoding run in a thread (`asyncio.to_thread`) and several
chunks are in flight at once, so the event loop keeps Bedrock calls flowing while a chunk is
decoded or written. Actors restart on another node if theirs dies (`max_restarts`), and a chunk
whose actor died is sent again: writing a part is idempotent, so a chunk is never counted twice.

The workers run the same `Ensemble` as the online farm, in-process, rather than calling the
Serve app: offline throughput should not pay the graph's per-request hops, and a batch job should
not depend on a long-running service. Bedrock quotas are still the cluster's (quota actors).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import ray

from actors.quota import LeasedQuotas
from farm.batching import make_batches
from farm.config import FarmConfig, parse_config
from farm.ensemble import Ensemble
from farm.judges import needs_bedrock
from farm.offline.plan import build_manifest, chunks, part_name, prepare_output
from farm.offline.reader import count_rows, describe_inputs, iter_rows
from farm.offline.rescoring import (
    OWNER,
    RescoreSummary,
    Row,
    commit_chunk,
    decode_chunk,
    encode_chunk,
    ensemble_with,
    failed_ids,
    finish,
    progress_printer,
)
from farm.offline.results import read_part_table
from farm.offline.store import OutputStore
from farm.wire import RewardResult, Rollout

__all__ = ["RescoreSummary", "RescoreWorker", "progress_printer", "rescore"]


@ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)
class RescoreWorker:
    """Owns one ensemble (its Bedrock client and quota leases) and writes parts to the store."""

    def __init__(self, farm_config: dict[str, Any], out: str, fmt: str, label_column: str | None, batch: bool = False, run_token: str = ""):
        self.config = parse_config(farm_config, source="farm config")
        quotas = LeasedQuotas(self.config.quota_for) if any(needs_bedrock(j) for j in self.config.judges) else None
        self.batch = None
        if batch:
            from farm.bedrock import ConverseClient
            from farm.offline.bedrock_batch import ReplayClient
            from farm.ratelimit import QuotaRegistry

            self.batch = ReplayClient(ConverseClient(self.config.bedrock, quotas or QuotaRegistry(self.config.quota_for), patient=True))
            self.ensemble = ensemble_with(self.config, self.batch)
        else:
            self.ensemble = Ensemble.from_config(self.config, quotas=quotas, patient=True)  # offline: quota waits, never fails
        self.judges = [j.name for j in self.config.judges]
        self.store = OutputStore(out)
        self.run_token = run_token
        self.fmt = fmt
        self.label_column = label_column

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def collect(self, index: int, rows: list[Row]) -> dict[str, list[Any]]:
        """The Bedrock requests this chunk's judges would make, recorded, not sent (batch mode)."""
        from farm.offline.bedrock_batch import RecordingClient

        rollouts, _, _ = await asyncio.to_thread(decode_chunk, rows, None)
        recorder = RecordingClient()
        ensemble = ensemble_with(self.config, recorder)
        for batch in make_batches(rollouts, self.config.batch_size):
            await ensemble.score(batch)
        return recorder.records

    def counters(self) -> dict[str, Any]:
        """Batch answers used, on-demand calls made and their tokens per model (batch mode)."""
        if self.batch is None:
            return {"counts": {}, "tokens": {}}
        return {"counts": dict(self.batch.counters), "tokens": {m: list(t) for m, t in self.batch.on_demand_tokens.items()}}

    async def _score(self, rollouts: list[Rollout], labels: list[Any]) -> tuple[list[RewardResult], list[Any]]:
        by_id = {id(r): i for i, r in enumerate(rollouts)}
        order: list[int] = []
        results: list[RewardResult] = []
        for batch in make_batches(rollouts, self.config.batch_size):
            results.extend(await self.ensemble.score(batch))
            order.extend(by_id[id(r)] for r in batch)
        return results, [labels[i] for i in order]

    async def process(
        self, index: int, rows: list[Row], retry_ids: list[str] | None = None, answers: dict[str, Any] | None = None, keep: bool = False
    ) -> dict[str, Any]:
        """Score one chunk (or, with `retry_ids`, only those rows of its committed part) and commit
        it; with `keep` the part's bytes come back to the driver instead of being written here."""
        started = time.monotonic()
        if answers and self.batch is not None:
            self.batch.add(answers)
        rollouts, labels, errors = await asyncio.to_thread(decode_chunk, rows, self.label_column)
        previous = None
        if retry_ids is not None:
            wanted = set(retry_ids)
            keep_rows = [i for i, r in enumerate(rollouts) if r.id in wanted]
            rollouts, labels = [rollouts[i] for i in keep_rows], [labels[i] for i in keep_rows]
            previous = await asyncio.to_thread(self._read_part, index)
        results, ordered_labels = await self._score(rollouts, labels)
        if answers and self.batch is not None:
            self.batch.forget(answers)
        data = await asyncio.to_thread(
            encode_chunk, results, self.judges, ordered_labels if self.label_column else None, self.fmt, previous
        )
        error_bytes = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors).encode()
        stats: dict[str, Any] = {
            "index": index,
            "rows": len(rows),
            "scored": len(results),
            "invalid": len(errors),
            "status": dict(Counter(r.status for r in results)),
            "retried": len(results) if retry_ids is not None else 0,
            "recovered": sum(1 for r in results if "judge_failed" not in r.flags) if retry_ids is not None else 0,
            "seconds": time.monotonic() - started,
            "node": ray.get_runtime_context().get_node_id(),
        }
        if keep:
            stats["part"], stats["errors"] = data, error_bytes
        else:
            await asyncio.to_thread(commit_chunk, self.store, self.run_token, index, self.fmt, data, error_bytes, retry_ids is not None)
        return stats

    def _read_part(self, index: int) -> Any:
        data = self.store.read(part_name(index, self.fmt))
        if data is None:
            raise FileNotFoundError(f"{self.store.uri}: {part_name(index, self.fmt)} vanished before its retry")
        return read_part_table(data, self.fmt) if self.fmt == "parquet" else data


def rescore(
    inputs: Sequence[str],
    out: str | Any,
    config: FarmConfig,
    *,
    resume: bool = False,
    retry_failed: bool = True,
    label_column: str | None = None,
    workers: int | None = None,
    chunk_rows: int = 2000,
    fmt: str = "parquet",
    env: dict[str, str] | None = None,
    worker_resources: dict[str, float] | None = None,
    collect_in_driver: bool = False,
    bedrock_batch: Any = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> RescoreSummary:
    """Score every row of `inputs` into `out` (a directory or `s3://` prefix); needs `ray.init()`.

    On resume, committed chunks are skipped and, with `retry_failed`, their rows whose judges
    failed are scored again. `collect_in_driver` returns parts through the object store for the
    driver to write (the alternative measured in benchmarks/rescore.py). `bedrock_batch` (a
    `farm.offline.bedrock_batch.BatchSettings`) sends the LLM judges' calls through Bedrock batch
    inference first."""
    started = time.monotonic()
    files = describe_inputs(inputs)
    store = OutputStore(str(out))
    if bedrock_batch is not None:
        from farm.offline.bedrock_batch import batch_config

        config = batch_config(config)
    extra = {"bedrock_batch": bedrock_batch is not None}
    done = prepare_output(store, build_manifest(files, config, chunk_rows, fmt, label_column, **extra), resume)
    total = count_rows(files)
    n = workers or _default_workers(worker_resources)
    options: dict[str, Any] = {"scheduling_strategy": "SPREAD"}  # one node's loss costs few actors
    if env:
        options["runtime_env"] = {"env_vars": dict(env)}
    if worker_resources:
        options["resources"] = dict(worker_resources)
    raw = config.model_dump(mode="json", by_alias=True)
    batch = bedrock_batch is not None
    token = uuid.uuid4().hex
    store.write(OWNER, token.encode())  # fences off actors of an earlier, killed driver
    # mypy keeps a decorated class's own type; @ray.remote made it an ActorClass, which has .options
    pool = [RescoreWorker.options(**options).remote(raw, store.uri, fmt, label_column, batch, token) for _ in range(n)]  # type: ignore[attr-defined]
    summary = RescoreSummary()
    answers_for: Callable[[int], dict[str, Any] | None] = lambda _index: None  # noqa: E731
    if batch:
        from farm.offline.bedrock_batch import run_batch_phase

        summary.batch, answers_for = run_batch_phase(pool, files, store, chunk_rows, done, bedrock_batch, config)
    pending: dict[Any, tuple[int, list[Row], list[str] | None, int]] = {}
    progress = 0

    def submit(index: int, rows: list[Row], retry: list[str] | None, tries: int) -> None:
        worker = pool[(index + tries) % n]
        ref = worker.process.remote(index, rows, retry, answers_for(index), collect_in_driver)
        pending[ref] = (index, rows, retry, tries)

    def collect(block: bool) -> None:
        nonlocal progress
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=None if block else 0)
        for ref in ready:
            index, rows, retry, tries = pending.pop(ref)
            try:
                stats = ray.get(ref)
            except ray.exceptions.RayError as exc:  # its node died, or a transient storage error: parts are idempotent
                if tries >= 4:
                    raise
                summary.resubmitted_chunks += 1
                print(f"\nchunk {index}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}; sending it again", file=sys.stderr)
                submit(index, rows, retry, tries + 1)
                continue
            if collect_in_driver:
                errors = stats.pop("errors")
                if errors:
                    store.write(f"errors/part-{index:06d}.jsonl", errors)
                store.write(part_name(index, fmt), stats.pop("part"))
            summary.chunks += 1
            summary.scored += stats["scored"]
            summary.invalid += stats["invalid"]
            summary.retried_rows += stats["retried"]
            summary.recovered_rows += stats["recovered"]
            summary.status.update(stats["status"])
            summary.nodes[stats["node"]] += 1
            progress += 0 if retry is not None else stats["rows"]
            if on_progress:
                on_progress(progress, total)

    for index, rows in chunks(iter_rows(files), chunk_rows):
        summary.rows += len(rows)
        plain = [(r.source, r.line, r.data) for r in rows]
        if index in done:
            summary.skipped_chunks += 1
            progress += len(rows)
            retry = failed_ids(store, index, fmt) if (resume and retry_failed) else []
            if not retry:
                continue
            while len(pending) >= 2 * n:
                collect(block=True)
            submit(index, plain, retry, 0)
            continue
        while len(pending) >= 2 * n:
            collect(block=True)
        submit(index, plain, None, 0)
    while pending:
        collect(block=True)
    if batch:
        from farm.offline.bedrock_batch import billed_cost

        used: Counter[str] = Counter()
        tokens: dict[str, list[int]] = {}
        for counters in ray.get([actor.counters.remote() for actor in pool]):
            used.update(counters["counts"])
            for model, (tokens_in, tokens_out) in counters["tokens"].items():
                tokens[model] = [tokens.get(model, [0, 0])[0] + tokens_in, tokens.get(model, [0, 0])[1] + tokens_out]
        summary.batch["replay"] = dict(used)
        summary.batch["on_demand_tokens"] = tokens
        summary.batch["cost"] = billed_cost(summary.batch, tokens, config)
    for actor in pool:
        ray.kill(actor, no_restart=True)
    summary.elapsed_s = round(time.monotonic() - started, 2)
    summary.report = finish(store, config, fmt, summary)
    return summary


def _default_workers(resources: dict[str, float] | None) -> int:
    """One actor per CPU of the nodes the actors may use (those offering the custom resource)."""
    if not resources:
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    nodes = [n for n in ray.nodes() if n.get("Alive") and all(n["Resources"].get(k, 0) > 0 for k in resources)]
    return max(1, int(sum(n["Resources"].get("CPU", 0) for n in nodes)))
