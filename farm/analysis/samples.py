"""The data integrity checks run on: a user's JSONL file, or the samples packaged in `farm/data`
(100 GSM8K rollouts with `is_correct`, 100 HH-RLHF pairs). Read strictly: a bad line is an
error that names it, never skipped."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from farm.errors import InputError
from farm.jsonl import LineError, read_rollouts
from farm.wire import Rollout

__all__ = ["GSM8K_SAMPLE", "HH_SAMPLE", "gold_labels", "packaged_data", "read_sample"]

GSM8K_SAMPLE = "gsm8k_sample.jsonl"
HH_SAMPLE = "hh_pairs_sample.jsonl"


def packaged_data(name: str) -> str:
    """Path of a sample shipped in `farm/data`."""
    return str(resources.files("farm").joinpath(f"data/{name}"))


def read_sample(path: str | None, limit: int | None = None) -> list[Rollout]:
    """Up to `limit` rollouts from `path` (default the packaged GSM8K sample)."""
    path = path or packaged_data(GSM8K_SAMPLE)
    rollouts: list[Rollout] = []
    for item in read_rollouts(path):
        if limit is not None and len(rollouts) >= limit:
            break
        if isinstance(item, LineError):
            raise InputError(item.error, row=f"{Path(path).name}:{item.line}")
        rollouts.append(item)
    return rollouts


def gold_labels(rollouts: Sequence[Rollout], key: str | None) -> list[bool] | None:
    """Each rollout's `metadata[key]` as a bool, or None unless every rollout has one."""
    if not key:
        return None
    labels = [r.metadata.get(key) for r in rollouts]
    return None if any(v is None for v in labels) else [bool(v) for v in labels]
