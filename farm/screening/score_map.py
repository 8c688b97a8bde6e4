"""Calibration maps applied at scoring time: a judge's raw score through its fitted Platt map.

Fitting the map is analysis (`farm.analysis.calibration`, `farm calibrate`); applying it is part
of every score, so it sits below the ensemble."""

from __future__ import annotations

import math

import msgspec

from farm.config import ScoreMap
from farm.wire import Verdict

__all__ = ["apply_score_map", "platt"]


def platt(score: float, a: float, b: float) -> float:
    z = a * score + b
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def apply_score_map(verdict: Verdict, score_map: ScoreMap) -> Verdict:
    """The verdict with its score mapped; the raw score is kept in `criteria.raw_score`."""
    if verdict.score is None:
        return verdict
    mapped = platt(verdict.score, score_map.a, score_map.b)
    return msgspec.structs.replace(verdict, score=mapped, criteria={**verdict.criteria, "raw_score": verdict.score})
