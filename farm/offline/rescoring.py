"""The parts of a rescore that need no Ray: decode a chunk's rows, encode a chunk (merging a retry
into its committed part), commit it behind the run's ownership fence, list a part's retryable
rows, and write the summary and report when every chunk is in. The actors and the driver that
schedules them are in `actors/rescore.py`; the manifest and chunking are in `farm.offline.plan`.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from farm.config import FarmConfig
from farm.ensemble import Ensemble, EnsembleMember
from farm.jsonl import decode_row
from farm.judges import build_judge
from farm.offline.plan import part_name, retryable_ids
from farm.offline.report import render_html, summarise
from farm.offline.results import encode_part, read_columns, read_part_table
from farm.offline.store import OutputStore
from farm.wire import RewardResult, Rollout

__all__ = [
    "OWNER",
    "RescoreSummary",
    "Row",
    "commit_chunk",
    "decode_chunk",
    "encode_chunk",
    "ensemble_with",
    "failed_ids",
    "finish",
    "label_of",
    "progress_printer",
]

Row = tuple[str, int, Any]
"""(source file, line number, the row as decoded JSON or a Parquet record)."""
OWNER = "_owner"
"""The token of the run that owns the output now; only its actors commit parts."""


def decode_chunk(rows: Sequence[Row], label_column: str | None) -> tuple[list[Rollout], list[Any], list[dict[str, Any]]]:
    """A chunk's rollouts, their gold labels (None without `label_column`), and one record per invalid row."""
    rollouts: list[Rollout] = []
    labels: list[Any] = []
    errors: list[dict[str, Any]] = []
    for source, line, data in rows:
        rollout, obj, error = decode_row(data, f"{source}:{line}")
        if rollout is None:
            row_id = obj.get("id") if obj is not None and isinstance(obj.get("id"), str) else None
            errors.append({"source": source, "line": line, "id": row_id, "error": error})
            continue
        rollouts.append(rollout)
        labels.append(label_of(obj or {}, label_column))
    return rollouts, labels, errors


def label_of(obj: dict[str, Any], column: str | None) -> Any:
    """The gold label of a row: its `column` key, else `metadata[column]`."""
    if column is None:
        return None
    if column in obj:
        return obj[column]
    metadata = obj.get("metadata")
    return metadata.get(column) if isinstance(metadata, dict) else None


def encode_chunk(results: list[RewardResult], judges: list[str], labels: list[Any] | None, fmt: str, previous: Any) -> bytes:
    """A part's bytes; on a retry (`previous`: the committed part, a table for Parquet, bytes for
    JSONL), the previous part's other rows plus the re-scored ones, each with its attempt count."""
    labels_or_none = labels
    if previous is None:
        return encode_part(results, judges, labels_or_none, fmt)
    retried = {r.id for r in results}
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        old_attempts = dict(zip(previous.column("id").to_pylist(), previous.column("attempts").to_pylist(), strict=True))
        attempts = [old_attempts.get(r.id, 0) + 1 for r in results]
        fresh = pq.read_table(pa.BufferReader(encode_part(results, judges, labels_or_none, "parquet", attempts)))
        kept = previous.filter(pc.invert(pc.is_in(previous.column("id"), pa.array(list(retried), pa.string()))))
        sink = pa.BufferOutputStream()
        pq.write_table(pa.concat_tables([kept, fresh.select(kept.column_names)]), sink, compression="zstd")
        return sink.getvalue().to_pybytes()
    old_lines = [line for line in previous.splitlines() if line.strip()]
    decoded = [json.loads(line) for line in old_lines]
    old_attempts = {d["id"]: d.get("attempts", 1) for d in decoded}
    kept_lines = [line + b"\n" for line, d in zip(old_lines, decoded, strict=True) if d["id"] not in retried]
    attempts = [old_attempts.get(r.id, 0) + 1 for r in results]
    return b"".join(kept_lines) + encode_part(results, judges, labels_or_none, "jsonl", attempts)


def commit_chunk(store: OutputStore, run_token: str, index: int, fmt: str, data: bytes, errors: bytes, retry: bool) -> None:
    """Write a chunk's invalid-row record, then its part (the commit), unless a newer run owns the output."""
    owner = store.read(OWNER)
    if run_token and owner is not None and owner.decode() != run_token:
        # a newer run (a resume) owns the output: this actor outlived its killed driver, and its
        # late write must not replace what the newer run wrote
        raise RuntimeError(f"{store.uri} now belongs to another run; not committing chunk {index}")
    if not retry:  # a retry keeps the chunk's invalid-row record as first written
        name = f"errors/part-{index:06d}.jsonl"
        if errors:
            store.write(name, errors)
        else:
            store.delete(name)
    store.write(part_name(index, fmt), data)  # the commit


def ensemble_with(config: FarmConfig, client: Any) -> Ensemble:
    """The configured ensemble with `client` behind its Bedrock judges (recording or replaying)."""
    from farm.cache import VerdictCache

    cache = VerdictCache(config.cache.max_entries, enabled=config.cache.enabled)
    members = [EnsembleMember(j, build_judge(j, client, cache)) for j in config.judges]
    return Ensemble(members, config.aggregation, client=client, cache=cache, integrity=config.integrity, patient=True)


@dataclass
class RescoreSummary:
    """What a rescore did: rows, chunks, retries, statuses, the nodes that scored, and the report."""

    rows: int = 0
    scored: int = 0
    invalid: int = 0
    skipped_chunks: int = 0
    chunks: int = 0
    retried_rows: int = 0
    recovered_rows: int = 0
    resubmitted_chunks: int = 0
    status: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)
    nodes: Counter[str] = field(default_factory=Counter)
    batch: dict[str, Any] = field(default_factory=dict)


def failed_ids(store: OutputStore, index: int, fmt: str) -> list[str]:
    """The ids of a committed part's rows whose judges failed (what a resume scores again)."""
    data = store.read(part_name(index, fmt))
    return retryable_ids(read_part_table(data, fmt, ["id", "flags"])) if data is not None else []


def finish(store: OutputStore, config: FarmConfig, fmt: str, summary: RescoreSummary) -> dict[str, Any]:
    """Merge invalid-row records, read every part's columns, write the summary and the report."""
    error_lines = [line for name in store.list("part-", ".jsonl", folder="errors") for line in (store.read(name) or b"").splitlines()]
    merged = store.sibling(".errors.jsonl")
    if error_lines:
        merged.write("", b"\n".join(error_lines) + b"\n")
    else:
        merged.delete("")
    names = store.list("part-", "." + fmt)
    attempts: Counter[int] = Counter()

    def parts() -> Iterator[bytes]:
        for name in names:
            data = store.read(name) or b""
            attempts.update(read_part_table(data, fmt, ["attempts"]).column("attempts").to_pylist())
            yield data

    columns = read_columns(parts(), [j.name for j in config.judges], fmt)
    report = summarise(columns, config, elapsed_s=summary.elapsed_s, invalid_rows=len(error_lines))
    report["parts"] = len(names)
    report["retry"] = {
        "retried_rows": summary.retried_rows,
        "recovered_rows": summary.recovered_rows,
        "still_failed": {name: j["failures_by_reason"] for name, j in report["judges"].items() if j["failures_by_reason"]},
        "rows_with_failed_judges": report["flags"].get("judge_failed", 0),
    }
    report["attempts"] = {str(k): v for k, v in sorted(attempts.items())}
    if summary.batch:
        report["bedrock_batch"] = summary.batch
        cost = summary.batch.get("cost")
        if cost:  # the judges' costs count every verdict at on-demand prices; the bill is batch + on-demand calls
            report["total_cost_usd_at_on_demand_prices"] = report["total_cost_usd"]
            report["total_cost_usd"] = cost["billed_usd"]
    store.sibling(".summary.json").write("", (json.dumps(report, indent=2) + "\n").encode())
    store.sibling(".report.html").write("", render_html(report, f"Rescore report: {store.uri.rsplit('/', 1)[-1]}").encode())
    return report


def progress_printer(stream: Any = sys.stderr) -> Callable[[int, int | None], None]:
    """An `on_progress` callback that rewrites one stderr line at most once a second."""
    started = time.monotonic()
    last = [0.0]

    def show(done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] < 1.0 and done != total:
            return
        last[0] = now
        rate = done / max(now - started, 1e-9)
        eta = f", ETA {int((total - done) / rate)}s" if total and rate > 0 else ""
        of = f"/{total}" if total else ""
        stream.write(f"\rrescored {done}{of} rows, {rate:,.0f} rows/s{eta}   ")
        stream.flush()

    return show
