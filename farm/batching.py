"""Splitting rollouts into batches without splitting a group (preference judges need whole groups)."""

from __future__ import annotations

from collections.abc import Sequence

from farm.wire import Rollout

__all__ = ["make_batches"]


def make_batches(rollouts: Sequence[Rollout], batch_size: int) -> list[list[Rollout]]:
    """Batches of about `batch_size` that never split a group (a group larger than that is one batch)."""
    units: dict[str, list[Rollout]] = {}
    for index, rollout in enumerate(rollouts):
        units.setdefault(rollout.group if rollout.group is not None else f"\0{index}", []).append(rollout)
    batches: list[list[Rollout]] = []
    current: list[Rollout] = []
    for unit in units.values():
        if current and len(current) + len(unit) > batch_size:
            batches.append(current)
            current = []
        current.extend(unit)
    if current:
        batches.append(current)
    return batches
