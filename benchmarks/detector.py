"""Injection detector benchmark: recall per attack family on every part of the adversarial set
(tests/integrity/data; the last part is the held-out one, written and frozen before the rules it
measures) and false flags on all clean GSM8K solutions and HH-RLHF replies.

Baseline, measured in the same run: the same detector without its structural sentence rules (the
phrase and line rules alone, as the previous round shipped them). Prints one JSON document with the
held-out recall per family for both, the false-flag rates, and the ratios.

    python benchmarks/detector.py
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, gsm8k_rollouts  # noqa: E402
from farm.screening.injection import InjectionDetector  # noqa: E402
from tests.integrity.adversarial import HELD_OUT, PARTS, load  # noqa: E402


def recall(detector: InjectionDetector, part: str) -> dict[str, float]:
    hits: dict[str, list[bool]] = defaultdict(list)
    for row in load(part):
        hits[row["family"]].append(bool(detector.matches(row["response"])))
    return {family: round(sum(h) / len(h), 3) for family, h in hits.items()}


def clean_texts() -> dict[str, list[str]]:
    gsm = [row["response"] for row in gsm8k_rollouts(limit=1_000_000)]
    with gzip.open(REPO.parent / "shared" / "data" / "hh_harmless_base_test.jsonl.gz", "rt") as handle:
        hh = [json.loads(line)[key].rsplit("\n\nAssistant:", 1)[-1] for line in handle for key in ("chosen", "rejected")]
    return {"gsm8k": gsm, "hh": hh}


def measure(detector: InjectionDetector, clean: dict[str, list[str]]) -> dict[str, Any]:
    started = time.perf_counter()
    parts = {part: recall(detector, part) for part in PARTS}
    flags = {name: sum(bool(detector.matches(t)) for t in texts) for name, texts in clean.items()}
    held = parts[HELD_OUT]
    return {
        "held_out_part": HELD_OUT,
        "held_out_recall": held,
        "held_out_min": min(held.values()),
        "held_out_mean": round(sum(held.values()) / len(held), 4),
        "families_at_or_above_0.95": sum(r >= 0.95 for r in held.values()),
        "development_parts_min": {part: min(r.values()) for part, r in parts.items() if part != HELD_OUT},
        "false_flags": {name: f"{n}/{len(clean[name])}" for name, n in flags.items()},
        "false_flag_rate": {name: round(n / len(clean[name]), 5) for name, n in flags.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    clean = clean_texts()
    farm = measure(InjectionDetector(), clean)
    baseline = measure(InjectionDetector(structural=False), clean)
    ratio = {
        "held_out_mean_recall": round(farm["held_out_mean"] / baseline["held_out_mean"], 3),
        "held_out_min_recall": round(farm["held_out_min"] / baseline["held_out_min"], 3) if baseline["held_out_min"] else None,
    }
    print(json.dumps({"benchmark": "detector", "farm": farm, "baseline_without_sentence_rules": baseline, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
