"""Helpers shared by the benchmarks: the reference data and a closed-loop load generator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
SOLUTION_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")

T = TypeVar("T")


def gsm8k_rollouts(limit: int, keys: Sequence[str] = SOLUTION_KEYS) -> list[dict[str, Any]]:
    """Up to `limit` labelled GSM8K rollouts from ../shared/data (the shipped sample when absent)."""
    shared = REPO.parent / "shared" / "data" / "gsm8k_model_solutions.jsonl"
    if not shared.exists():
        rows = [json.loads(line) for line in (REPO / "examples" / "gsm8k_rollouts.jsonl").read_text().splitlines()]
        return rows[:limit]
    out: list[dict[str, Any]] = []
    with shared.open() as handle:
        for index, line in enumerate(handle):
            row = json.loads(line)
            for key in keys:
                out.append(
                    {"id": f"{index}-{key}", "prompt": row["question"], "response": row[key]["solution"], "reference": row["ground_truth"]}
                )
            if len(out) >= limit:
                break
    return out[:limit]


async def closed_loop(
    call: Callable[[T], Awaitable[Any]], items: Sequence[T], workers: int, seconds: float, size: Callable[[T], int] = lambda _: 1
) -> float:
    """Items per second with `workers` callers each calling again as soon as its call returns."""
    done = 0
    stop = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        i = offset
        while time.monotonic() < stop:
            item = items[i % len(items)]
            await call(item)
            done += size(item)
            i += workers

    started = time.monotonic()
    await asyncio.gather(*(worker(k) for k in range(workers)))
    return done / (time.monotonic() - started)


def print_report(measure: Callable[[], dict[str, Any]]) -> None:
    """Run `measure` with stdout sent to stderr (Ray's log monitor prints there), then print
    its report as the one JSON document on stdout."""
    with contextlib.redirect_stdout(sys.stderr):
        report = measure()
    print(json.dumps(report, indent=2))
