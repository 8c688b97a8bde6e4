"""Training the sentence classifier: logistic regression by SGD in pure Python, deterministic.

Kept apart from the data (benchmarks/train_detector.py reads the attack rounds and the clean sets)
so a test can train a small model and the trainer stays the one definition of the settings.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

from farm.screening.classifier import SentenceClassifier, features

__all__ = ["BALANCE", "EPOCHS", "L2", "MIN_COUNT", "fit", "threshold_for"]

EPOCHS = 6
L2 = 3e-3
MIN_COUNT = 2
"""A feature seen in fewer training sentences gets no weight (it would only memorise)."""
BALANCE = 0.3
"""Positives' total weight as a share of the negatives'."""


def fit(pos: Sequence[str], neg: Sequence[str], epochs: int = EPOCHS, l2: float = L2, balance: float = BALANCE) -> dict[str, float]:
    """Weights for `features` from positive and negative sentences (Adagrad steps, classes weighted),
    rounded and pruned as shipped so a threshold chosen on them holds for the shipped file."""
    counts: dict[str, int] = {}
    rows: list[tuple[list[str], int]] = []
    for label, texts in ((1, pos), (0, neg)):
        for text in texts:
            feats = features(text)
            rows.append((feats, label))
            for f in feats:
                counts[f] = counts.get(f, 0) + 1
    rows = [([f for f in feats if counts[f] >= MIN_COUNT or f == "bias"], label) for feats, label in rows]
    class_weight = {1: balance * len(neg) / max(1, len(pos)), 0: 1.0}
    w: dict[str, float] = {}
    g2: dict[str, float] = {}
    rng = random.Random(0)
    order = list(range(len(rows)))
    for _ in range(epochs):
        rng.shuffle(order)
        for i in order:
            feats, label = rows[i]
            z = sum(w.get(f, 0.0) for f in feats)
            p = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
            grad = (p - label) * class_weight[label]
            if abs(grad) < 1e-4:
                continue
            for f in feats:
                wf = w.get(f, 0.0)
                g = grad + l2 * wf
                g2[f] = g2.get(f, 0.0) + g * g
                w[f] = wf - 0.5 * g / math.sqrt(g2[f])
    return {f: round(v, 3) for f, v in w.items() if abs(v) >= 0.005}


def threshold_for(weights: dict[str, float], clean: Iterable[tuple[int, Sequence[str]]], rate: float) -> float:
    """The lowest threshold (at least 0.5) at which at most `rate` of each clean set is flagged, given
    per set its size and the (normalised) texts nothing else flags: a set of n texts of which the
    rules already flag k leaves room for int(rate * n) - k more."""
    model = SentenceClassifier(weights, 0.5)
    floor = 0.5
    for total, texts in clean:
        budget = max(0, int(rate * total) - (total - len(texts)))
        scores = sorted((model.score(t) for t in texts), reverse=True)
        if len(scores) > budget:  # flag at most `budget` texts: just above the (budget+1)-th highest score
            floor = max(floor, scores[budget] + 1e-6)
    return min(floor, 0.999999)
