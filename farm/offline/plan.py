"""A rescore run's bookkeeping, without Ray: the manifest that pins a run's settings, the fixed
chunks of input rows, which chunks are committed, and which committed rows should be retried.

Chunk k is rows [k*chunk_rows, (k+1)*chunk_rows) of the inputs in order; its part file is its
commit. Resume skips committed chunks, and retries the rows of committed chunks whose judges
failed (flag `judge_failed`), so every input row ends up exactly once, with an attempt count.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from farm.config import FarmConfig
from farm.errors import ConfigError
from farm.flags import Flag
from farm.offline.reader import InputFile, fingerprint
from farm.offline.store import OutputStore

__all__ = ["MANIFEST", "build_manifest", "chunks", "part_index", "part_name", "prepare_output", "retryable_ids"]

MANIFEST = "_manifest.json"
T = TypeVar("T")


def part_name(index: int, fmt: str) -> str:
    return f"part-{index:06d}.{fmt}"


def part_index(name: str) -> int:
    return int(name.rsplit("/", 1)[-1].split("-")[1].split(".")[0])


def chunks(rows: Iterator[T], size: int) -> Iterator[tuple[int, list[T]]]:
    chunk: list[T] = []
    index = 0
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield index, chunk
            index, chunk = index + 1, []
    if chunk:
        yield index, chunk


def build_manifest(
    files: Sequence[InputFile], config: FarmConfig, chunk_rows: int, fmt: str, label_column: str | None, **extra: Any
) -> dict[str, Any]:
    """What must not change between a run and its resume; the inputs by a content hash."""
    return {
        "inputs": [f.uri for f in files],
        "inputs_fingerprint": fingerprint(files),
        "chunk_rows": chunk_rows,
        "format": fmt,
        "label_column": label_column,
        "judges": [j.name for j in config.judges],
        "config": config.model_dump(mode="json", by_alias=True),
        **extra,
    }


def prepare_output(store: OutputStore, manifest: dict[str, Any], resume: bool) -> set[int]:
    """The indices of chunks already committed; refuses to mix runs with different settings."""
    if not store.is_empty():
        if not resume:
            raise ConfigError(f"{store.uri} already holds results; pass --resume to finish that run, or choose another --out")
        raw = store.read(MANIFEST)
        if raw is None:
            raise ConfigError(f"{store.uri} is not a rescore output (no {MANIFEST}); refusing to write into it")
        previous = json.loads(raw)
        changed = [k for k in manifest if previous.get(k) != manifest[k]]
        if changed:
            raise ConfigError(f"cannot resume {store.uri}: {', '.join(changed)} changed since the run that wrote it")
    else:
        store.write(MANIFEST, json.dumps(manifest, indent=1).encode())
    store.remove_stale()  # a part being written when the last run died
    return {part_index(n) for n in store.list("part-", "." + manifest["format"])}


def retryable_ids(table: Any) -> list[str]:
    """Ids of the rows in a part table (columns id, flags) that a judge failed to score."""
    ids = table.column("id").to_pylist()
    flags = table.column("flags").to_pylist()
    return [i for i, f in zip(ids, flags, strict=True) if f and str(Flag.JUDGE_FAILED) in f]
