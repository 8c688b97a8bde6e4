"""Preference pairs with a human choice: `{id, prompt, chosen, rejected}` rows, or raw HH-RLHF
transcripts (`{chosen, rejected}`, both ending in the assistant turn that differs)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from farm.errors import InputError

__all__ = ["PreferencePair", "read_pairs"]

_TURN = "\n\nAssistant:"


@dataclass(frozen=True)
class PreferencePair:
    id: str
    prompt: str
    chosen: str
    rejected: str


def read_pairs(path: str | Path, limit: int | None = None) -> list[PreferencePair]:
    opener = gzip.open if str(path).endswith(".gz") else open
    pairs: list[PreferencePair] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if limit is not None and len(pairs) >= limit:
                break
            pairs.append(_pair(line, f"{Path(path).name}:{number}"))
    return pairs


def _pair(line: str, where: str) -> PreferencePair:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", row=where) from None
    for key in ("chosen", "rejected"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise InputError("must be a non-empty string", field=key, row=where)
    if "prompt" in row:
        if not isinstance(row["prompt"], str):
            raise InputError("must be a string", field="prompt", row=where)
        return PreferencePair(str(row.get("id", where)), row["prompt"], row["chosen"], row["rejected"])
    chosen_prefix, _, chosen = row["chosen"].rpartition(_TURN)
    rejected_prefix, _, rejected = row["rejected"].rpartition(_TURN)
    if not chosen_prefix or chosen_prefix != rejected_prefix:
        raise InputError("an HH transcript pair must share everything before its last assistant turn", field="chosen", row=where)
    return PreferencePair(str(row.get("id", where)), chosen_prefix.strip() + _TURN, chosen.strip(), rejected.strip())
