"""Reading rollouts from JSONL (plain or gzip): every bad line becomes a recorded error, never a silent drop."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from farm.errors import InputError
from farm.wire import Rollout, parse_rollout

__all__ = ["LineError", "read_rollouts"]

_decoder = msgspec.json.Decoder()


@dataclass(frozen=True)
class LineError:
    line: int
    error: str
    id: str | None = None


def read_rollouts(path: str | Path) -> Iterator[Rollout | LineError]:
    """Yield a rollout or a `LineError` for every non-blank line, in order."""
    opener = gzip.open if str(path).endswith(".gz") else open
    seen: set[str] = set()
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield LineError(number, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})")
                continue
            try:
                obj = _decoder.decode(text)
            except msgspec.DecodeError as exc:
                yield LineError(number, f"not valid JSON: {exc}")
                continue
            try:
                rollout = parse_rollout(obj, where=f"line {number}")
            except InputError as exc:
                yield LineError(number, str(exc), obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None)
                continue
            if rollout.id in seen:
                yield LineError(number, f"duplicate id {rollout.id!r}; the first occurrence is scored", rollout.id)
                continue
            seen.add(rollout.id)
            yield rollout
