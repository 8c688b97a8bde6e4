"""Rows from JSONL (plain or gzip) and Parquet, local or `s3://`, each with its 1-based row number.

Rows stay raw (bytes for JSONL, dicts for Parquet) so that workers, not the driver, parse them;
a malformed line becomes an error with its file and line number in the worker.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["InputFile", "RawRow", "count_rows", "describe_inputs", "fingerprint", "iter_rows"]

_BLOCK = 1 << 20


@dataclass(frozen=True)
class InputFile:
    uri: str
    size: int
    mtime: float | None
    kind: str
    """`jsonl` or `parquet`."""


@dataclass(frozen=True)
class RawRow:
    source: str
    line: int
    data: bytes | dict[str, Any]


def _filesystem(uri: str) -> tuple[Any, str]:
    from pyarrow import fs

    if "://" in uri:
        return fs.FileSystem.from_uri(uri)
    return fs.LocalFileSystem(), uri


def _kind(uri: str) -> str:
    lowered = uri.lower()
    if lowered.endswith((".parquet", ".pq")):
        return "parquet"
    if lowered.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")):
        return "jsonl"
    raise ValueError(f"{uri}: unknown input format (expected .jsonl, .jsonl.gz or .parquet)")


def describe_inputs(uris: Sequence[str]) -> list[InputFile]:
    """Size, modification time and kind of each input (the fingerprint hashes their content)."""
    out = []
    for uri in uris:
        filesystem, path = _filesystem(uri)
        info = filesystem.get_file_info(path)
        if info.size is None:
            raise FileNotFoundError(f"{uri}: no such file")
        mtime = info.mtime.timestamp() if info.mtime is not None else None
        out.append(InputFile(uri=uri, size=int(info.size), mtime=mtime, kind=_kind(uri)))
    return out


def fingerprint(files: Sequence[InputFile]) -> str:
    """A streaming SHA-256 (SHA-NI accelerated) of every input's bytes (compressed files hashed as stored), so that a
    same-size edit that keeps the modification time is still seen (benchmarks/rescore.py fingerprint)."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.kind}:{file.size}:".encode())
        filesystem, path = _filesystem(file.uri)
        with filesystem.open_input_stream(path, compression=None) as stream:
            while block := stream.read(8 * _BLOCK):
                digest.update(block)
    return digest.hexdigest()


def iter_rows(files: Sequence[InputFile], parquet_batch: int = 8192) -> Iterator[RawRow]:
    for file in files:
        if file.kind == "parquet":
            yield from _parquet_rows(file, parquet_batch)
        else:
            yield from _jsonl_rows(file)


def count_rows(files: Sequence[InputFile]) -> int | None:
    """Non-blank rows in local inputs (for progress and ETA); None when an input is remote."""
    total = 0
    for file in files:
        if "://" in file.uri:
            return None
        if file.kind == "parquet":
            import pyarrow.parquet as pq

            total += pq.ParquetFile(file.uri).metadata.num_rows
        else:
            total += sum(1 for _ in _jsonl_lines(file))
    return total


def _jsonl_rows(file: InputFile) -> Iterator[RawRow]:
    for number, line in _jsonl_lines(file):
        yield RawRow(file.uri, number, line)


def _jsonl_lines(file: InputFile) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line) for every non-blank line."""
    filesystem, path = _filesystem(file.uri)
    compression = "gzip" if file.uri.lower().endswith(".gz") else None
    with filesystem.open_input_stream(path, compression=compression) as stream:
        number = 0
        tail = b""
        while True:
            block = stream.read(_BLOCK)
            if not block:
                break
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            for line in lines:
                number += 1
                if line.strip():
                    yield number, line
        if tail.strip():
            yield number + 1, tail


def _parquet_rows(file: InputFile, batch_size: int) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    filesystem, path = _filesystem(file.uri)
    with filesystem.open_input_file(path) as handle:
        number = 0
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_size):
            for row in batch.to_pylist():
                number += 1
                yield RawRow(file.uri, number, row)
