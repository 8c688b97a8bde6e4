"""Reading rollouts from JSONL (plain or gzip): every bad line becomes a recorded error, never a silent drop."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm.errors import InputError
from farm.wire import Rollout, decode_json, parse_rollout

__all__ = ["LineError", "decode_row", "read_rollouts"]


@dataclass(frozen=True)
class LineError:
    line: int
    error: str
    id: str | None = None


def decode_row(data: bytes | dict[str, Any], where: str) -> tuple[Rollout | None, dict[str, Any] | None, str | None]:
    """One raw row (a JSONL line or a Parquet row) as (rollout, the decoded object, error).

    A line is decoded like an HTTP body (`decode_json`: depth limit, lone surrogates, JSON errors
    with a position), then by the same typed decoder, so a file and a request fail alike."""
    obj: Any = data
    if isinstance(data, bytes):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, None, f"not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        try:
            obj = decode_json(data, where=where, what="the line")
        except InputError as exc:
            return None, None, str(exc)
    try:
        return parse_rollout(obj, where=where), obj, None
    except InputError as exc:
        return None, obj if isinstance(obj, dict) else None, str(exc)


def read_rollouts(path: str | Path) -> Iterator[Rollout | LineError]:
    """Yield a rollout or a `LineError` for every non-blank line, in order."""
    opener = gzip.open if str(path).endswith(".gz") else open
    seen: set[str] = set()
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            rollout, obj, error = decode_row(raw.rstrip(b"\r\n"), f"line {number}")
            if rollout is None:
                row_id = obj.get("id") if obj is not None and isinstance(obj.get("id"), str) else None
                yield LineError(number, error or "invalid row", row_id)
                continue
            if rollout.id in seen:
                yield LineError(number, f"duplicate id {rollout.id!r}; the first occurrence is scored", rollout.id)
                continue
            seen.add(rollout.id)
            yield rollout
