"""Aggregation and disagreement: small pure functions over the judges that answered.

None means "did not score" and is skipped, never averaged in as 0; every function reports
nothing (None) when nothing is left to aggregate.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = ["aggregate", "disagreement", "majority", "median", "trimmed_mean", "weighted_mean"]

Scored = Sequence[tuple[float | None, float]]
"""(score, weight) per judge."""


def _present(scored: Scored) -> list[tuple[float, float]]:
    return [(s, w) for s, w in scored if s is not None and w > 0]


def weighted_mean(scored: Scored) -> float | None:
    present = _present(scored)
    total = sum(w for _, w in present)
    return sum(s * w for s, w in present) / total if total else None


def median(scored: Scored) -> float | None:
    present = _present(scored)
    return statistics.median(s for s, _ in present) if present else None


def trimmed_mean(scored: Scored, fraction: float = 0.2) -> float | None:
    """Mean after dropping `fraction` of the judges at each end (at least one kept)."""
    values = sorted(s for s, _ in _present(scored))
    if not values:
        return None
    cut = int(len(values) * fraction)
    kept = values[cut : len(values) - cut] or values
    return sum(kept) / len(kept)


def majority(scored: Scored, threshold: float = 0.5) -> float | None:
    """1.0 when the weighted votes of judges scoring at least `threshold` outweigh the rest."""
    present = _present(scored)
    if not present:
        return None
    passed = sum(w for s, w in present if s >= threshold)
    return 1.0 if passed > sum(w for _, w in present) / 2 else 0.0


def aggregate(method: str, scored: Scored, *, trim_fraction: float = 0.2, pass_threshold: float = 0.5) -> float | None:
    """Dispatch on the configured method (a closed `Literal` in `AggregationConfig`)."""
    methods = {
        "weighted_mean": weighted_mean,
        "median": median,
        "trimmed_mean": lambda s: trimmed_mean(s, trim_fraction),
        "majority": lambda s: majority(s, pass_threshold),
    }
    if method not in methods:
        raise ValueError(f"unknown aggregation method {method!r}; expected one of {sorted(methods)}")
    return methods[method](scored)


def disagreement(scores: Sequence[float | None]) -> float | None:
    """Spread (max - min) of the normalised scores of the judges that answered; None below two."""
    present = [s for s in scores if s is not None]
    if len(present) < 2:
        return None
    return max(present) - min(present)
