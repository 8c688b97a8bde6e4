"""Length bias: the score's slope per doubling of length within a correctness label, and the
correction `farm calibrate` writes for a judge whose slope is over `LENGTH_BIAS_SLOPE`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from farm.config import LengthCorrection

__all__ = ["LENGTH_BIAS_SLOPE", "MIN_SLOPE_POINTS", "fit_length_correction", "length_slope", "shift"]

MIN_SLOPE_POINTS = 20
LENGTH_BIAS_SLOPE = 0.05
"""A judge whose score rises faster than this per doubling of length (within a label) is length-biased."""


def length_slope(scores: Sequence[float | None], lengths: Sequence[int], labels: Sequence[bool]) -> float | None:
    """Slope of score per doubling of length, fitted within each label and pooled; None when
    fewer than `MIN_SLOPE_POINTS` rollouts could be used."""
    num = den = 0.0
    used = 0
    for label in (True, False):
        points = [(math.log2(max(n, 1)), s) for s, n, y in zip(scores, lengths, labels, strict=True) if y == label and s is not None]
        if len(points) < 3:
            continue
        used += len(points)
        mx = sum(x for x, _ in points) / len(points)
        my = sum(y for _, y in points) / len(points)
        num += sum((x - mx) * (y - my) for x, y in points)
        den += sum((x - mx) ** 2 for x, _ in points)
    return round(num / den, 4) if den and used >= MIN_SLOPE_POINTS else None


def fit_length_correction(
    scores: Sequence[float | None], lengths: Sequence[int], labels: Sequence[bool], *, described_as: str = "data"
) -> LengthCorrection | None:
    """A correction for a judge found length-biased (slope over the threshold), pivoting on the median length."""
    slope = length_slope(scores, lengths, labels)
    if slope is None or slope <= LENGTH_BIAS_SLOPE:
        return None
    pivot = int(statistics.median(lengths))
    return LengthCorrection(slope=slope, pivot_chars=max(pivot, 1), fitted_on=f"{described_as} ({len(lengths)} rows)")


def shift(correction: LengthCorrection, length: int) -> float:
    """What the correction takes off a score at this length; never negative. The correction only
    removes a length advantage: a response shorter than the pivot keeps its score, because adding
    points below the pivot would pay terseness ("#### 7" would earn a bonus no judge gave it)."""
    return max(0.0, correction.slope * math.log2(max(length, 1) / correction.pivot_chars))
