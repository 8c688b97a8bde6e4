"""Preference quality per call: listwise (the default) against pairwise (the default before it).

The preference judge alone (no verifiable judge to lean on), against the Bedrock emulator's
simulated judge, on the shipped data:

- AUC of the preference reward against the GSM8K correctness labels (rollouts grouped by
  question, the ground truth as reference);
- accuracy against the human choice on the HH-RLHF pairs (each pair a group of two, no
  reference; a tie counts half).

Both with the emulator's default judge profile and with a position-biased one (`--position-bias`),
because cancelling position bias is what the repeated orders are for. Figures per mode: the
quality, Nova calls per rollout and input tokens per rollout; ratios new / old.

    python benchmarks/preference_quality.py            # all 5,276 GSM8K rollouts, all 2,312 HH pairs
    python benchmarks/preference_quality.py --gsm8k 400 --hh 300
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_report  # noqa: E402

MICRO = "amazon.nova-micro-v1:0"
TURN = "\n\nAssistant:"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODES: dict[str, dict[str, Any]] = {
    "listwise": {"comparison": "listwise", "anchor": "reference"},  # today's default
    "pairwise": {"comparison": "pairwise", "anchor": "none", "max_comparisons": 4},  # the default before
    "pairwise_anchored": {"comparison": "pairwise", "anchor": "reference", "max_comparisons": 4},  # what the anchor alone adds
}


def gsm8k_groups(limit: int) -> tuple[list[dict[str, Any]], list[bool]]:
    from tests.conftest import gsm8k_rollouts

    rows = gsm8k_rollouts(limit=(limit + 3) // 4)[:limit]
    return [{k: r[k] for k in ("id", "prompt", "response", "reference", "group")} for r in rows], [
        bool(r["metadata"]["is_correct"]) for r in rows
    ]


def hh_groups(limit: int) -> list[dict[str, Any]]:
    """Each HH-RLHF pair as a group of two: the shared dialogue as prompt, the last assistant turns
    as responses (chosen first). A few pairs differ earlier in the dialogue too; they keep the
    chosen transcript's prefix as the prompt, so all 2,312 human choices are measured."""
    rows = []
    with gzip.open(SHARED / "hh_harmless_base_test.jsonl.gz", "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if number >= limit:
                break
            pair = json.loads(line)
            prefix, _, chosen = pair["chosen"].rpartition(TURN)
            _, _, rejected = pair["rejected"].rpartition(TURN)
            group, prompt = f"hh{number}", prefix.strip() + TURN
            rows.append({"id": f"{group}-chosen", "prompt": prompt, "response": chosen.strip(), "group": group})
            rows.append({"id": f"{group}-rejected", "prompt": prompt, "response": rejected.strip(), "group": group})
    return rows


async def _score(mode: dict[str, Any], rows: list[dict[str, Any]]) -> list[float | None]:
    """As `farm score` does: batches of about 64 that keep groups whole, 4 at a time (one batch of
    thousands would run past the judge's deadline waiting for connections)."""
    from farm.batching import make_batches
    from farm.ensemble import Ensemble
    from farm.wire import parse_rollouts
    from tests.conftest import PREFERENCE, make_config

    ensemble = Ensemble.from_config(make_config([{**PREFERENCE, **mode}]))
    gate = asyncio.Semaphore(4)
    rewards: dict[str, float | None] = {}

    async def one(batch: list[Any]) -> None:
        async with gate:
            for result in await ensemble.score(batch):
                rewards[result.id] = result.reward

    try:
        await asyncio.gather(*(one(batch) for batch in make_batches(parse_rollouts(rows), 64)))
    finally:
        await ensemble.aclose()
    return [rewards[row["id"]] for row in rows]


def run(emulator: Any, mode: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[list[float | None], dict[str, float]]:
    emulator.reset()
    started = time.monotonic()
    rewards = asyncio.run(_score(mode, rows))
    stats = emulator.stats()[MICRO]
    return rewards, {
        "calls_per_rollout": round(stats.admitted / len(rows), 3),
        "input_tokens_per_rollout": round(stats.input_tokens / len(rows), 1),
        "output_tokens_per_call": round(stats.output_tokens / max(stats.admitted, 1), 1),
        "seconds": round(time.monotonic() - started, 1),
    }


def hh_accuracy(rows: list[dict[str, Any]], rewards: list[float | None]) -> float:
    points = 0.0
    for chosen, rejected in zip(rewards[0::2], rewards[1::2], strict=True):
        if chosen is None or rejected is None:
            continue
        points += 1.0 if chosen > rejected else 0.5 if chosen == rejected else 0.0
    return round(points / (len(rows) // 2), 4)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from farm.emulator.server import EmulatorThread
    from farm.emulator.settings import EmulatorSettings
    from farm.emulator.simjudge import JudgeProfile
    from farm.offline.report import auc

    for name, value in (("AWS_ACCESS_KEY_ID", "benchmark"), ("AWS_SECRET_ACCESS_KEY", "benchmark"), ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ.setdefault(name, value)
    gsm8k, labels = gsm8k_groups(args.gsm8k)
    hh = hh_groups(args.hh)
    out: dict[str, Any] = {}
    for profile_name, profile in (("default_judge", {}), (f"position_bias_{args.position_bias:g}", {"position_bias": args.position_bias})):
        settings = EmulatorSettings(latency_ms=0, latency_sigma=0, rpm=10_000_000, tpm=10_000_000_000, judge=JudgeProfile(**profile))
        with EmulatorThread(settings) as emulator:
            os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = emulator.url
            figures: dict[str, Any] = {}
            for name, mode in MODES.items():
                rewards, cost = run(emulator, mode, gsm8k)
                scored = [(r, y) for r, y in zip(rewards, labels, strict=True) if r is not None]
                hh_rewards, hh_cost = run(emulator, mode, hh)
                figures[name] = {
                    "gsm8k_auc": round(auc([r for r, _ in scored], [y for _, y in scored]) or 0.0, 4),
                    "gsm8k_unscored": len(rewards) - len(scored),
                    "gsm8k_cost": cost,
                    "hh_accuracy": hh_accuracy(hh, hh_rewards),
                    "hh_unscored": sum(r is None for r in hh_rewards),
                    "hh_cost": hh_cost,
                }
            new, old = figures["listwise"], figures["pairwise"]

            def ratio(a: float, b: float) -> float | None:
                return round(a / b, 4) if b else None

            figures["ratio_listwise_over_pairwise"] = {
                "gsm8k_auc": ratio(new["gsm8k_auc"], old["gsm8k_auc"]),
                "hh_accuracy": ratio(new["hh_accuracy"], old["hh_accuracy"]),
                "gsm8k_calls_per_rollout": ratio(new["gsm8k_cost"]["calls_per_rollout"], old["gsm8k_cost"]["calls_per_rollout"]),
                "gsm8k_input_tokens_per_rollout": ratio(
                    new["gsm8k_cost"]["input_tokens_per_rollout"], old["gsm8k_cost"]["input_tokens_per_rollout"]
                ),
            }
            out[profile_name] = figures
    return {
        "benchmark": "preference_quality",
        "figure": "preference judge alone: AUC vs GSM8K labels and accuracy vs HH-RLHF human choice, per mode, with calls and tokens",
        "params": {**vars(args), "gsm8k_rollouts": len(gsm8k), "hh_pairs": len(hh) // 2, "emulated_judge": "farm.emulator.simjudge"},
        "new": "listwise, 2 shuffled orders, reference anchor (the default)",
        "baseline": "pairwise, max_comparisons 4, both orders, no anchor (the default before)",
        "results": out,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gsm8k", type=int, default=5276, help="GSM8K rollouts (4 per question).")
    parser.add_argument("--hh", type=int, default=2312, help="HH-RLHF pairs.")
    parser.add_argument("--position-bias", type=float, default=0.1, help="The biased judge's position bias.")
    args = parser.parse_args()
    print_report(lambda: measure(args))


if __name__ == "__main__":
    main()
