"""Train the injection detector's sentence classifier (farm/screening/classifier.py), deterministically.

Positives: every sentence of every attack template of the development rounds
(tests/integrity/data/attacks_*.json, `ROUNDS`), plus the paraphrases in
benchmarks/detector_paraphrases.json (written by hand in other registers and vocabularies).
Negatives: every sentence of the clean GSM8K solutions and HH-RLHF replies in the TRAINING half
(a fixed CRC32 rule on each response's id, `half()`), and hand-written hard negatives. The
threshold is the lowest score at which the detector (rules OR classifier) flags at most
`MAX_FALSE_FLAG_RATE` of each clean set's EVALUATION half. The learning itself (settings included)
is farm/screening/training.py. Writes farm/screening/classifier_weights.json (~20 s).

    python benchmarks/train_detector.py            # train on every development round, write the weights
"""

from __future__ import annotations

import gzip
import json
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
from farm.screening.classifier import WEIGHTS, SentenceClassifier, sentences  # noqa: E402
from farm.screening.injection import InjectionDetector, fold_confusables, normalise  # noqa: E402
from farm.screening.training import fit, threshold_for  # noqa: E402

__all__ = ["ROUNDS", "Clean", "clean_sets", "half", "negatives", "positives", "train", "unflagged_eval"]

ROUNDS = (
    "dev",
    "heldout",
    "heldout2",
    "heldout3",
    "heldout4",
    "heldout5",
    "heldout6",
    "heldout7",
    "heldout8",
    "heldout9",
    "heldout10",
    "heldout11",
)
"""The development rounds the shipped weights are trained on. A fresh round (tests/integrity/adversarial.py
PARTS) is measured with the shipped weights before it is added here and the weights retrained."""

PARAPHRASES = Path(__file__).resolve().parent / "detector_paraphrases.json"
ATTACKS = REPO / "tests" / "integrity" / "data"
MAX_FALSE_FLAG_RATE = 0.001
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


def unflagged_eval(clean: Sequence[Clean]) -> dict[str, tuple[int, list[str]]]:
    """Per clean set: its evaluation half's size and the texts the rules alone do not flag."""
    rules = InjectionDetector(classifier=False)
    out = {}
    for c in clean:
        texts = c.part("eval")
        out[c.name] = (len(texts), [_view(t) for t in texts if not rules.matches(t)])
    return out


def train(
    parts: Sequence[str], clean: Sequence[Clean], unflagged: dict[str, tuple[int, list[str]]] | None = None, paraphrases: bool = True
) -> SentenceClassifier:
    weights = fit(positives(parts, paraphrases), negatives(clean))
    unflagged = unflagged if unflagged is not None else unflagged_eval(clean)
    return SentenceClassifier(weights, threshold_for(weights, unflagged.values(), MAX_FALSE_FLAG_RATE))


def main() -> None:
    started = time.perf_counter()
    clean = clean_sets()
    model = train(ROUNDS, clean)
    about = {
        "_about": "Sentence classifier weights for farm/screening/classifier.py; regenerate with python benchmarks/train_detector.py",
        "trained_on": list(ROUNDS),
        "max_false_flag_rate": MAX_FALSE_FLAG_RATE,
    }
    WEIGHTS.write_text(json.dumps(model.to_json(about), separators=(",", ":")) + "\n", encoding="utf-8")
    summary = {"weights": str(WEIGHTS.relative_to(REPO)), "features": len(model.weights), "threshold": model.threshold}
    print(json.dumps({**summary, "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
