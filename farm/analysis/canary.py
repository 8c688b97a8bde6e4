"""Canaries: rollouts with known scores mixed into live traffic, removed from the results, and
watched for drift.

A judge's canary score is compared with its baseline for that canary (`metadata.expected_scores`
in the canary file, else the first score seen); the mean difference over the last `window`
canaries is the judge's drift. Beyond `threshold` (with at least `min_samples`) the judge is
in alarm: the signal that its model or prompt changed under the farm and it needs
recalibrating. The alarm clears when the drift falls back under half the threshold.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from farm.analysis.samples import read_sample
from farm.config import CanaryConfig
from farm.ensemble import Ensemble
from farm.errors import ConfigError
from farm.wire import RewardResult, Rollout, mark_fresh

__all__ = ["CANARY_KEY", "CanaryMonitor", "DriftEvent", "load_canaries", "pin_canaries"]

CANARY_KEY = "farm_canary"
"""Metadata key naming the canary a live copy came from."""


@dataclass(frozen=True)
class DriftEvent:
    judge: str
    alarm: bool
    """True: the alarm was raised; False: it cleared."""
    drift: float
    samples: int


def load_canaries(config: CanaryConfig) -> list[Rollout]:
    canaries = read_sample(config.data, config.count)
    if not canaries:
        raise ConfigError(f"canary file {config.data or 'packaged sample'} has no rollouts")
    return canaries


async def pin_canaries(ensemble: Ensemble, canaries: Sequence[Rollout]) -> list[dict[str, Any]]:
    """Canary rows (ungrouped, as they travel) with every judge's fresh score now in
    `metadata.expected_scores`; a judge that did not answer is left out, not pinned at 0."""
    fresh = [mark_fresh(c, group=None) for c in canaries]
    results = await ensemble.score(fresh)
    rows = []
    for canary, result in zip(canaries, results, strict=True):
        expected = {name: v.score for name, v in result.judges.items() if v.status == "ok" and v.score is not None}
        row = msgspec.to_builtins(msgspec.structs.replace(canary, group=None))
        row["metadata"] = {**canary.metadata, "expected_scores": expected}
        rows.append(row)
    return rows


class CanaryMonitor:
    """Draws canaries for each request and tracks every judge's drift from its baselines."""

    def __init__(self, config: CanaryConfig, canaries: Sequence[Rollout]):
        self.config = config
        self.canaries = list(canaries)
        self._credit = 0.0
        self._order = itertools.cycle(range(len(self.canaries)))
        self._serial = itertools.count()
        self._baselines: dict[tuple[str, str], float] = {}
        for canary in self.canaries:
            for judge, score in (canary.metadata.get("expected_scores") or {}).items():
                self._baselines[(judge, canary.id)] = float(score)
        self._deltas: dict[str, deque[float]] = {}
        self._alarm: dict[str, bool] = {}
        self.observed = 0

    def draw(self, live: int) -> list[Rollout]:
        """Canaries to add to a request of `live` rollouts: `rate` per rollout on average, exactly
        (fractions carry over to the next request), cycling through the canary set."""
        self._credit += self.config.rate * live
        count = int(self._credit)
        self._credit -= count
        out = []
        for _ in range(count):
            canary = self.canaries[next(self._order)]
            out.append(mark_fresh(canary, id=f"farm-canary-{next(self._serial)}", group=None, metadata={CANARY_KEY: canary.id}))
        return out

    def observe(self, canaries: Sequence[Rollout], results: Sequence[RewardResult]) -> list[DriftEvent]:
        """Record the canaries' verdicts; returns the alarms raised or cleared by them."""
        touched: set[str] = set()
        for canary, result in zip(canaries, results, strict=True):
            source = canary.metadata[CANARY_KEY]
            for judge, verdict in result.judges.items():
                if verdict.status != "ok" or verdict.score is None:
                    continue
                baseline = self._baselines.setdefault((judge, source), verdict.score)
                window = self._deltas.setdefault(judge, deque(maxlen=self.config.window))
                window.append(verdict.score - baseline)
                touched.add(judge)
            self.observed += 1
        events = []
        for judge in sorted(touched):
            drift, samples = self.drift(judge)
            was = self._alarm.get(judge, False)
            now = samples >= self.config.min_samples and abs(drift) > self.config.threshold
            if was and abs(drift) > self.config.threshold / 2:
                now = True
            if now != was:
                self._alarm[judge] = now
                events.append(DriftEvent(judge, now, drift, samples))
        return events

    def drift(self, judge: str) -> tuple[float, int]:
        window = self._deltas.get(judge)
        if not window:
            return 0.0, 0
        return sum(window) / len(window), len(window)

    def alarms(self) -> list[str]:
        return sorted(j for j, on in self._alarm.items() if on)

    def status(self) -> dict[str, Any]:
        judges = {}
        for judge in sorted(self._deltas):
            drift, samples = self.drift(judge)
            judges[judge] = {"drift": round(drift, 4), "samples": samples, "alarm": self._alarm.get(judge, False)}
        return {
            "rate": self.config.rate,
            "canaries": len(self.canaries),
            "observed": self.observed,
            "threshold": self.config.threshold,
            "judges": judges,
            "alarms": self.alarms(),
        }
