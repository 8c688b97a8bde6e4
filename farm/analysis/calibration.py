"""How far to trust each judge: agreement with gold labels (accuracy, AUC, expected calibration
error, a fitted Platt map), and, where no labels exist, reliability estimated from the judges'
agreement with each other (Dawid–Skene, binary). Both give ensemble weights."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from farm.screening.score_map import platt
from farm.stats import auc, expected_calibration_error

__all__ = [
    "JudgeCalibration",
    "calibrate",
    "dawid_skene",
    "expected_calibration_error",
    "fit_platt",
    "platt",
    "weights_from_accuracy",
]


def fit_platt(scores: Sequence[float], labels: Sequence[float], iterations: int = 50) -> tuple[float, float]:
    """(a, b) of p = sigmoid(a·score + b) by Newton's method on the log-loss (lightly regularised)."""
    a, b = 1.0, 0.0
    for _ in range(iterations):
        ga = gb = haa = hab = hbb = 0.0
        for s, y in zip(scores, labels, strict=True):
            p = platt(s, a, b)
            w = p * (1 - p)
            ga += (p - y) * s
            gb += p - y
            haa += w * s * s
            hab += w * s
            hbb += w
        haa += 1e-3
        hbb += 1e-3
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a, b = a - da, b - db
        if abs(da) + abs(db) < 1e-8:
            break
    return a, b


@dataclass(frozen=True)
class JudgeCalibration:
    n: int
    accuracy: float
    auc: float | None
    ece: float
    platt: tuple[float, float]
    ece_after_platt: float

    def as_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "accuracy": round(self.accuracy, 4),
            "auc": None if self.auc is None else round(self.auc, 4),
            "ece": round(self.ece, 4),
            "platt": {"a": round(self.platt[0], 4), "b": round(self.platt[1], 4)},
            "ece_after_platt": round(self.ece_after_platt, 4),
        }


def calibrate(scores: Sequence[float | None], labels: Sequence[bool | float | None]) -> JudgeCalibration | None:
    pairs = [(float(s), float(y)) for s, y in zip(scores, labels, strict=True) if s is not None and y is not None]
    if len(pairs) < 10:
        return None
    s, y = [p[0] for p in pairs], [p[1] for p in pairs]
    a, b = fit_platt(s, y)
    mapped = [platt(v, a, b) for v in s]
    area = auc(s, y)
    return JudgeCalibration(
        n=len(pairs),
        accuracy=sum((v >= 0.5) == (t >= 0.5) for v, t in pairs) / len(pairs),
        auc=area,
        ece=expected_calibration_error(s, y),
        platt=(a, b),
        ece_after_platt=expected_calibration_error(mapped, y),
    )


def weights_from_accuracy(accuracies: Mapping[str, float], floor: float = 0.0) -> dict[str, float]:
    """Log-odds weights, the optimal weights for independent binary voters; a judge at chance or
    worse gets `floor`."""
    out = {}
    for name, acc in accuracies.items():
        acc = min(max(acc, 1e-3), 1 - 1e-3)
        out[name] = max(floor, math.log(acc / (1 - acc)))
    return out


def dawid_skene(votes: Sequence[Mapping[str, bool | None]], iterations: int = 100) -> tuple[dict[str, float], list[float]]:
    """Label-free reliability of binary judges: each judge's estimated accuracy, and each item's
    posterior probability of being positive (EM from a majority-vote start)."""
    judges = sorted({j for row in votes for j in row})
    posterior = []
    for row in votes:
        present = [v for v in row.values() if v is not None]
        posterior.append(sum(present) / len(present) if present else 0.5)
    sens = dict.fromkeys(judges, 0.7)
    spec = dict.fromkeys(judges, 0.7)
    prior = 0.5
    for _ in range(iterations):
        for j in judges:
            tp = fp = pos = neg = 1e-3
            for q, row in zip(posterior, votes, strict=True):
                v = row.get(j)
                if v is None:
                    continue
                pos += q
                neg += 1 - q
                tp += q * v
                fp += (1 - q) * v
            sens[j], spec[j] = tp / pos, 1 - fp / neg
        prior = min(max(sum(posterior) / len(posterior), 1e-3), 1 - 1e-3)
        updated = []
        for row in votes:
            lp, ln = math.log(prior), math.log(1 - prior)
            for j, v in row.items():
                if v is None:
                    continue
                s, c = min(max(sens[j], 1e-3), 1 - 1e-3), min(max(spec[j], 1e-3), 1 - 1e-3)
                lp += math.log(s if v else 1 - s)
                ln += math.log(1 - c if v else c)
            updated.append(1.0 / (1.0 + math.exp(ln - lp)))
        posterior = updated
    accuracy = {j: prior * sens[j] + (1 - prior) * spec[j] for j in judges}
    return accuracy, posterior
