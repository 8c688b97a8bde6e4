"""Offline rescoring on Ray: workers parse, score and write fixed chunks of rows; the driver
streams raw rows to them and keeps a resumable record of what is done.

Chunk k is rows [k*chunk_rows, (k+1)*chunk_rows) of the inputs in order, and its part file is
written atomically, so a part on disk means the whole chunk is done: after a crash (even
SIGKILL), `--resume` skips those chunks, and every input row ends up exactly once.

The workers run the same `Ensemble` as the online farm, in-process, rather than calling the
Serve app: offline throughput should not pay the graph's per-request hops (~9 ms measured in
benchmarks/serve_overhead.py), and a batch job should not depend on a long-running service.
Bedrock quotas are still the cluster's: workers take leases from the same quota actors.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from actors.quota import LeasedQuotas
from farm.batching import make_batches
from farm.config import FarmConfig, parse_config
from farm.ensemble import Ensemble
from farm.errors import ConfigError
from farm.jsonl import decode_row
from farm.judges import needs_bedrock
from farm.offline.reader import InputFile, RawRow, count_rows, describe_inputs, fingerprint, iter_rows
from farm.offline.report import render_html, summarise
from farm.offline.results import read_columns, write_part
from farm.wire import Rollout

__all__ = ["RescoreSummary", "RescoreWorker", "rescore"]


@ray.remote(num_cpus=1)
class RescoreWorker:
    def __init__(self, farm_config: dict[str, Any], out_dir: str, fmt: str, label_column: str | None):
        self.config = parse_config(farm_config, source="farm config")
        quotas = LeasedQuotas(self.config.quota_for) if any(needs_bedrock(j) for j in self.config.judges) else None
        self.ensemble = Ensemble.from_config(self.config, quotas=quotas, patient=True)  # offline: quota waits, never fails
        self.judges = [j.name for j in self.config.judges]
        self.out_dir = Path(out_dir)
        self.fmt = fmt
        self.label_column = label_column

    async def process(self, index: int, rows: list[tuple[str, int, Any]]) -> dict[str, Any]:
        started = time.monotonic()
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
            labels.append(_label_of(obj or {}, self.label_column))
        by_id = {id(r): i for i, r in enumerate(rollouts)}
        order: list[int] = []
        results = []
        for batch in make_batches(rollouts, self.config.batch_size):
            results.extend(await self.ensemble.score(batch))
            order.extend(by_id[id(r)] for r in batch)
        ordered_labels = [labels[i] for i in order] if self.label_column else None
        errors_path = self.out_dir / "errors" / f"part-{index:06d}.jsonl"
        if errors:
            tmp = errors_path.with_name(errors_path.name + ".tmp")
            tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors), encoding="utf-8")
            tmp.replace(errors_path)
        else:
            errors_path.unlink(missing_ok=True)
        write_part(self.out_dir / f"part-{index:06d}.{self.fmt}", results, self.judges, ordered_labels, self.fmt)  # the commit
        return {
            "index": index,
            "rows": len(rows),
            "scored": len(results),
            "invalid": len(errors),
            "status": dict(Counter(r.status for r in results)),
            "seconds": time.monotonic() - started,
        }


def _label_of(obj: dict[str, Any], column: str | None) -> Any:
    if column is None:
        return None
    if column in obj:
        return obj[column]
    metadata = obj.get("metadata")
    return metadata.get(column) if isinstance(metadata, dict) else None


@dataclass
class RescoreSummary:
    rows: int = 0
    scored: int = 0
    invalid: int = 0
    skipped_chunks: int = 0
    chunks: int = 0
    status: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)


def _chunks(rows: Iterator[RawRow], size: int) -> Iterator[tuple[int, list[RawRow]]]:
    chunk: list[RawRow] = []
    index = 0
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield index, chunk
            index, chunk = index + 1, []
    if chunk:
        yield index, chunk


def _manifest(files: Sequence[InputFile], config: FarmConfig, chunk_rows: int, fmt: str, label_column: str | None) -> dict[str, Any]:
    return {
        "inputs": [f.uri for f in files],
        "inputs_fingerprint": fingerprint(files),
        "chunk_rows": chunk_rows,
        "format": fmt,
        "label_column": label_column,
        "judges": [j.name for j in config.judges],
        "config": config.model_dump(mode="json", by_alias=True),
    }


def _prepare_output(out_dir: Path, manifest: dict[str, Any], resume: bool) -> set[int]:
    """The indices of chunks already committed; refuses to mix runs with different settings."""
    manifest_path = out_dir / "_manifest.json"
    if out_dir.exists() and any(out_dir.iterdir()):
        if not resume:
            raise ConfigError(f"{out_dir} already holds results; pass --resume to finish that run, or choose another --out")
        if not manifest_path.exists():
            raise ConfigError(f"{out_dir} is not a rescore output (no _manifest.json); refusing to write into it")
        previous = json.loads(manifest_path.read_text())
        changed = [k for k in manifest if previous.get(k) != manifest[k]]
        if changed:
            raise ConfigError(f"cannot resume {out_dir}: {', '.join(changed)} changed since the run that wrote it")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(json.dumps(manifest, indent=1))
    (out_dir / "errors").mkdir(exist_ok=True)
    for stale in out_dir.glob("**/*.tmp"):
        stale.unlink()  # a part being written when the last run died
    return {int(p.name.split("-")[1].split(".")[0]) for p in out_dir.glob(f"part-*.{manifest['format']}")}


def rescore(
    inputs: Sequence[str],
    out: str | Path,
    config: FarmConfig,
    *,
    resume: bool = False,
    label_column: str | None = None,
    workers: int | None = None,
    chunk_rows: int = 2000,
    fmt: str = "parquet",
    env: dict[str, str] | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> RescoreSummary:
    """Score every row of `inputs` into the directory `out`; needs `ray.init()` first."""
    started = time.monotonic()
    files = describe_inputs(inputs)
    out_dir = Path(out)
    done = _prepare_output(out_dir, _manifest(files, config, chunk_rows, fmt, label_column), resume)
    total = count_rows(files)
    n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    options: dict[str, Any] = {"runtime_env": {"env_vars": dict(env)}} if env else {}
    raw = config.model_dump(mode="json", by_alias=True)
    pool = [RescoreWorker.options(**options).remote(raw, str(out_dir), fmt, label_column) for _ in range(n)]
    summary = RescoreSummary()
    pending: dict[Any, int] = {}
    progress = 0

    def collect(block: bool) -> None:
        nonlocal progress
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=None if block else 0)
        for ref in ready:
            stats = ray.get(ref)  # a worker crash raises here: the run stops, --resume continues it
            del pending[ref]
            summary.chunks += 1
            summary.scored += stats["scored"]
            summary.invalid += stats["invalid"]
            summary.status.update(stats["status"])
            progress += stats["rows"]
            if on_progress:
                on_progress(progress, total)

    for index, rows in _chunks(iter_rows(files), chunk_rows):
        summary.rows += len(rows)
        if index in done:
            summary.skipped_chunks += 1
            progress += len(rows)
            continue
        while len(pending) >= 2 * n:
            collect(block=True)
        worker = pool[index % n]
        pending[worker.process.remote(index, [(r.source, r.line, r.data) for r in rows])] = index
    while pending:
        collect(block=True)
    _merge_errors(out_dir)
    summary.elapsed_s = round(time.monotonic() - started, 2)
    parts = sorted(out_dir.glob(f"part-*.{fmt}"))
    columns = read_columns(parts, [j.name for j in config.judges])
    invalid = sum(1 for _ in _error_lines(out_dir))
    summary.report = summarise(columns, config, elapsed_s=summary.elapsed_s, invalid_rows=invalid)
    base = str(out_dir).rstrip("/")
    Path(base + ".summary.json").write_text(json.dumps(summary.report, indent=2) + "\n", encoding="utf-8")
    Path(base + ".report.html").write_text(render_html(summary.report, f"Rescore report: {out_dir.name}"), encoding="utf-8")
    return summary


def _error_lines(out_dir: Path) -> Iterator[str]:
    for part in sorted((out_dir / "errors").glob("part-*.jsonl")):
        yield from part.read_text(encoding="utf-8").splitlines()


def _merge_errors(out_dir: Path) -> None:
    lines = list(_error_lines(out_dir))
    target = Path(str(out_dir).rstrip("/") + ".errors.jsonl")
    if lines:
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        target.unlink(missing_ok=True)


def progress_printer(stream: Any = sys.stderr) -> Callable[[int, int | None], None]:
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
