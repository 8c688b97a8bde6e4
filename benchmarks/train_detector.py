"""Train the injection detector's sentence classifier (farm/screening/classifier.py), deterministically.

Positives: every sentence of every attack template of the development rounds
(tests/integrity/data/attacks_*.json, `PARTS`), plus the paraphrases in
benchmarks/detector_paraphrases.json (written by hand in other registers and vocabularies).
Negatives: every sentence of the clean GSM8K solutions and HH-RLHF replies in the TRAINING half
(a fixed CRC32 rule on each response's id, `half()`). The threshold is the lowest score at which
the detector (rules OR classifier) flags at most `MAX_FALSE_FLAG_RATE` of each clean set's
EVALUATION half. Writes farm/screening/classifier_weights.json.

    python benchmarks/train_detector.py            # train on every development round, write the weights
"""

from __future__ import annotations

import gzip
import json
import math
import random
import re
import sys
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, gsm8k_rollouts  # noqa: E402
from farm.screening.classifier import WEIGHTS, SentenceClassifier, features, sentences  # noqa: E402
from farm.screening.injection import InjectionDetector, fold_confusables, normalise  # noqa: E402
from tests.integrity.adversarial import PARTS  # noqa: E402

__all__ = ["Clean", "clean_sets", "fit", "half", "positives", "train"]

PARAPHRASES = Path(__file__).resolve().parent / "detector_paraphrases.json"
ATTACKS = REPO / "tests" / "integrity" / "data"
MAX_FALSE_FLAG_RATE = 0.001
EPOCHS = 12
L2 = 1e-6
MIN_COUNT = 2
_ENCODED = re.compile(r"\{(?:b64|hex|rot13):(.*)\}", re.S)


def half(row_id: str) -> str:
    """'train' or 'eval': a fixed rule on the id, so every run splits the clean data the same way."""
    return "train" if zlib.crc32(row_id.encode()) % 2 == 0 else "eval"


@dataclass(frozen=True)
class Clean:
    name: str
    ids: list[str]
    texts: list[str]

    def part(self, which: str) -> list[str]:
        return [t for i, t in zip(self.ids, self.texts, strict=True) if half(i) == which]


def clean_sets() -> list[Clean]:
    gsm = gsm8k_rollouts(limit=1_000_000)
    with gzip.open(REPO.parent / "shared" / "data" / "hh_harmless_base_test.jsonl.gz", "rt") as handle:
        rows = [json.loads(line) for line in handle]
    hh_ids = [f"hh-{i}-{key}" for i in range(len(rows)) for key in ("chosen", "rejected")]
    hh = [row[key].rsplit("\n\nAssistant:", 1)[-1] for row in rows for key in ("chosen", "rejected")]
    return [Clean("gsm8k", [r["id"] for r in gsm], [r["response"] for r in gsm]), Clean("hh", hh_ids, hh)]


def _view(text: str) -> str:
    return fold_confusables(normalise(text))


def _render(template: str, rng: random.Random) -> str:
    text = template.replace("{wrong}", str(rng.randint(2, 999)))
    return _ENCODED.sub(lambda m: m.group(1), text)


def positives(parts: Sequence[str], paraphrases: bool = True) -> list[str]:
    """Sentences of the attack templates of `parts` (and the paraphrases), rendered and normalised."""
    rng = random.Random("positives")
    notes: list[str] = []
    for part in parts:
        data = json.loads((ATTACKS / f"attacks_{part}.json").read_text(encoding="utf-8"))
        notes += [t for family, templates in data.items() if not family.startswith("_") for t in templates]
    if paraphrases:
        data = json.loads(PARAPHRASES.read_text(encoding="utf-8"))
        notes += [t for family, templates in data.items() if not family.startswith("_") for t in templates]
    out = [s for note in notes for s in sentences(_view(_render(note, rng)))]
    return list(dict.fromkeys(out))


def negatives(clean: Iterable[Clean]) -> list[str]:
    """Sentences of the clean training halves, and the hand-written hard negatives."""
    out = [s for c in clean for text in c.part("train") for s in sentences(_view(text))]
    out += [s for text in json.loads(PARAPHRASES.read_text(encoding="utf-8"))["_negatives"] for s in sentences(_view(text))]
    return list(dict.fromkeys(out))


def fit(pos: Sequence[str], neg: Sequence[str], epochs: int = EPOCHS) -> dict[str, float]:
    """Logistic regression by SGD (Adagrad steps), classes weighted to equal mass; deterministic."""
    counts: dict[str, int] = {}
    rows: list[tuple[list[str], int]] = []
    for label, texts in ((1, pos), (0, neg)):
        for text in texts:
            feats = list(dict.fromkeys(features(text)))
            rows.append((feats, label))
            for f in feats:
                counts[f] = counts.get(f, 0) + 1
    rows = [([f for f in feats if counts[f] >= MIN_COUNT or f == "bias"], label) for feats, label in rows]
    class_weight = {1: len(neg) / max(1, len(pos)), 0: 1.0}
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
                g = grad + L2 * wf
                g2[f] = g2.get(f, 0.0) + g * g
                w[f] = wf - 0.5 * g / math.sqrt(g2[f])
    return {f: v for f, v in w.items() if abs(v) >= 1e-4}


def unflagged_eval(clean: Sequence[Clean]) -> dict[str, tuple[int, list[str]]]:
    """Per clean set: its evaluation half's size and the texts the rules alone do not flag."""
    rules = InjectionDetector(classifier=False)
    out = {}
    for c in clean:
        texts = c.part("eval")
        out[c.name] = (len(texts), [_view(t) for t in texts if not rules.matches(t)])
    return out


def threshold_for(model: SentenceClassifier, unflagged: dict[str, tuple[int, list[str]]], rate: float = MAX_FALSE_FLAG_RATE) -> float:
    """The lowest threshold at which rules OR classifier flag at most `rate` of each evaluation half."""
    floor = 0.5
    for total, texts in unflagged.values():
        budget = max(0, int(rate * total) - (total - len(texts)))
        scores = sorted((model.score(t) for t in texts), reverse=True)
        if len(scores) > budget:  # flag at most `budget` texts: just above the (budget+1)-th highest score
            floor = max(floor, scores[budget] + 1e-6)
    return min(floor, 0.999999)


def train(
    parts: Sequence[str], clean: Sequence[Clean], unflagged: dict[str, tuple[int, list[str]]] | None = None, paraphrases: bool = True
) -> SentenceClassifier:
    weights = fit(positives(parts, paraphrases), negatives(clean))
    model = SentenceClassifier(weights, 0.5)
    return SentenceClassifier(weights, threshold_for(model, unflagged if unflagged is not None else unflagged_eval(clean)))


def main() -> None:
    started = time.perf_counter()
    clean = clean_sets()
    model = train(PARTS, clean)
    about = {
        "_about": "Sentence classifier weights for farm/screening/classifier.py; regenerate with python benchmarks/train_detector.py",
        "trained_on": list(PARTS),
        "max_false_flag_rate": MAX_FALSE_FLAG_RATE,
    }
    WEIGHTS.write_text(json.dumps(model.to_json(about), indent=0, sort_keys=False) + "\n", encoding="utf-8")
    print(json.dumps({"weights": str(WEIGHTS.relative_to(REPO)), "features": len(model.weights), "threshold": model.threshold,
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
