"""Injection detector benchmark: recall per attack family on every round of the adversarial set
(tests/integrity/data) and false flags on every clean GSM8K solution and HH-RLHF reply, for the
shipped detector (rules OR the learned sentence classifier) and, measured in the same run, the
baseline: the rules alone (the previous round's detector).

The shipped classifier was trained on every development round, so its recall on them is in-sample.
Its generalisation is ESTIMATED by leave-one-round-out: for each round, a classifier trained
(benchmarks/train_detector.py, same settings) on the other rounds, the paraphrases and the clean
training half, thresholded on the clean evaluation half, is measured on the round it never saw.
False flags are given on the full clean sets and on the evaluation half (the clean half the
classifier was not trained on). Prints one JSON document (~5 min on one core).

    python benchmarks/detector.py
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.train_detector import ROUNDS, Clean, clean_sets, half, train, unflagged_eval  # noqa: E402
from farm.screening.classifier import SentenceClassifier, default_classifier  # noqa: E402
from farm.screening.injection import InjectionDetector, fold_confusables, normalise  # noqa: E402
from tests.integrity.adversarial import HELD_OUT, PARTS, load  # noqa: E402

Flagger = Callable[[str], bool]


def _view(text: str) -> str:
    return fold_confusables(normalise(text))


def recall(flag: Flagger, rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    hits: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        hits[row["family"]].append(flag(row["response"]))
    return {family: round(sum(h) / len(h), 3) for family, h in hits.items()}


def false_flags(flag: Flagger, clean: Sequence[Clean]) -> dict[str, str]:
    out = {}
    for c in clean:
        flagged = [half(i) for i, t in zip(c.ids, c.texts, strict=True) if flag(t)]
        n_eval = sum(half(i) == "eval" for i in c.ids)
        out[c.name] = f"{len(flagged)}/{len(c.texts)}"
        out[c.name + "_eval_half"] = f"{flagged.count('eval')}/{n_eval}"
    return out


def measure(flag: Flagger, clean: Sequence[Clean], rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    parts = {part: recall(flag, rows[part]) for part in PARTS}
    return {
        "recall_per_part": parts,
        "min_recall_per_part": {part: min(r.values()) for part, r in parts.items()},
        "false_flags": false_flags(flag, clean),
    }


def leave_one_round_out(clean: Sequence[Clean], rows: dict[str, list[dict[str, Any]]], rule_flags: dict[str, bool]) -> dict[str, Any]:
    """Per round: a classifier trained without it, measured on it, alone and ORed with the rules."""
    unflagged = unflagged_eval(clean)
    alone: dict[str, list[bool]] = defaultdict(list)
    combined: dict[str, list[bool]] = defaultdict(list)
    per_round: dict[str, dict[str, float]] = {}
    per_round_combined: dict[str, dict[str, float]] = {}
    thresholds = {}
    for held in ROUNDS:
        model = train([p for p in ROUNDS if p != held], clean, unflagged)
        thresholds[held] = round(model.threshold, 4)
        hits: dict[str, list[bool]] = defaultdict(list)
        either: dict[str, list[bool]] = defaultdict(list)
        for row in rows[held]:
            caught = model.flags(_view(row["response"]))
            hits[row["family"]].append(caught)
            either[row["family"]].append(caught or rule_flags[row["id"]])
            alone[row["family"]].append(caught)
            combined[row["family"]].append(caught or rule_flags[row["id"]])
        per_round[held] = {f: round(sum(h) / len(h), 3) for f, h in hits.items()}
        per_round_combined[held] = {f: round(sum(h) / len(h), 3) for f, h in either.items()}
    pooled = {f: round(sum(h) / len(h), 3) for f, h in alone.items()}
    return {
        "classifier_alone_pooled_recall": pooled,
        "classifier_alone_min_round_recall": {f: min(r[f] for r in per_round.values()) for f in pooled},
        "rules_or_classifier_pooled_recall": {f: round(sum(h) / len(h), 3) for f, h in combined.items()},
        "classifier_alone_per_round": per_round,
        "rules_or_classifier_per_round": per_round_combined,
        "thresholds": thresholds,
        "note": "rules_or_classifier is optimistic on every round: the rules were developed on all of them"
        " (each round's first measurement, before it was folded in, is the honest figure)",
    }


def microseconds(clean: Sequence[Clean], model: SentenceClassifier, rules: InjectionDetector, n: int = 1000) -> dict[str, float]:
    out = {}
    for c in clean:
        texts = c.texts[:n]
        views = [_view(t) for t in texts]
        started = time.perf_counter()
        for view in views:
            model.score(view)
        out[c.name + "_classifier_us"] = round((time.perf_counter() - started) / len(texts) * 1e6, 1)
        started = time.perf_counter()
        for text in texts:
            rules.matches(text)
        out[c.name + "_rules_us"] = round((time.perf_counter() - started) / len(texts) * 1e6, 1)
        detector = InjectionDetector()
        started = time.perf_counter()
        for text in texts:
            detector.matches(text)
        out[c.name + "_detector_us"] = round((time.perf_counter() - started) / len(texts) * 1e6, 1)
    return out


def main() -> None:
    started = time.perf_counter()
    clean = clean_sets()
    rows = {part: load(part) for part in PARTS}
    model = default_classifier()
    if model is None:
        raise SystemExit("no classifier weights: run python benchmarks/train_detector.py")
    rules = InjectionDetector(classifier=False)
    rule_flags = {row["id"]: bool(rules.matches(row["response"])) for part in ROUNDS for row in rows[part]}
    farm = measure(lambda t: bool(InjectionDetector().matches(t)), clean, rows)
    baseline = measure(lambda t: bool(rules.matches(t)), clean, rows)
    classifier_alone = measure(lambda t: model.flags(_view(t)), clean, rows)
    loro = leave_one_round_out(clean, rows, rule_flags)
    # the last development round: rules OR a classifier trained without it (the rules were revised after
    # its first measurement, so this is optimistic; its first measurement is in /work/notes and the README)
    last = ROUNDS[-1]
    held_combined, held_rules = loro["rules_or_classifier_per_round"][last], baseline["recall_per_part"][last]
    ratio = {
        f"{last}_min_family_recall_rules_or_loro_classifier_over_rules_alone": round(
            min(held_combined.values()) / min(held_rules.values()), 3
        ),
        f"{last}_mean_recall_rules_or_loro_classifier_over_rules_alone": round(sum(held_combined.values()) / sum(held_rules.values()), 3),
    }
    fresh = [part for part in PARTS if part not in ROUNDS]  # rounds the shipped weights never saw
    doc = {
        "benchmark": "detector",
        "fresh_rounds_shipped_detector": {part: farm["recall_per_part"][part] for part in fresh} or "TBD (none yet)",
        "fresh_rounds_rules_alone": {part: baseline["recall_per_part"][part] for part in fresh} or "TBD (none yet)",
        "held_out_part": HELD_OUT,
        "leave_one_round_out": loro,
        "farm_rules_or_classifier": farm,
        "baseline_rules_alone": baseline,
        "classifier_alone_shipped_weights_in_sample": {
            "false_flags": classifier_alone["false_flags"],
            "min_recall_per_part": classifier_alone["min_recall_per_part"],
        },
        "threshold": model.threshold,
        "cost_per_rollout": microseconds(clean, model, rules),
        "ratio": ratio,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
