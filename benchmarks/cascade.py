"""Cascade benchmark: how many GSM8K rollouts reach Nova, and at what quality, against always calling Nova.

GSM8K groups (one question, its four model solutions, ../shared/data) are scored twice in one run
with the packaged default ensemble (final answer, rubric on nova-lite, preference on nova-micro)
through `farm.scorefile.score_file` (what `farm score` runs) against the Bedrock emulator on
loopback HTTP, with unchanged aiobotocore:

- baseline: the default, every judge on every rollout (always calling Nova);
- cascade: the same judges with `aggregation.escalate: {enabled: true}` (defaults otherwise).

A share of the groups (`--no-reference-share`) has its reference removed, standing in for prompts
a rule cannot check (open-ended tasks); there the cascade must escalate. Prints one JSON document:
share of rollouts that reach Nova and Nova calls/input tokens per rollout for both, accuracy and
AUC of the reward against the `is_correct` labels for both (all rollouts, and split by whether a
reference was given), the agreement of the two rewards, and the ratios cascade / baseline.

The emulator's simulated judge reads the reference's final answer the way the rule does, so with a
reference Nova adds little the rule does not know; without one it has no signal. The quality figure
therefore checks that the cascade loses nothing on this data; it cannot show what a real Nova adds.

    python benchmarks/cascade.py --groups 128 --no-reference-share 0.25 --latency-ms 20
    python benchmarks/cascade.py --groups 128 --local-tier   # rule + MiniLM similarity first, then Nova
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, SOLUTION_KEYS, print_report  # noqa: E402
from farm.cascade import escalated, reached  # noqa: E402
from farm.config import FarmConfig, load_raw_config, parse_config  # noqa: E402
from farm.emulator import EmulatorSettings, EmulatorThread  # noqa: E402
from farm.judges import needs_bedrock  # noqa: E402
from farm.offline.report import auc  # noqa: E402
from farm.scorefile import score_file  # noqa: E402
from farm.wire import RewardResult, decode_results  # noqa: E402


def groups(count: int, no_reference_share: float, seed: int) -> list[dict[str, Any]]:
    """`count` GSM8K questions as groups of four labelled rollouts; a seeded choice of
    round(`no_reference_share` × `count`) groups without reference."""
    path = REPO.parent / "shared" / "data" / "gsm8k_model_solutions.jsonl"
    open_groups = set(random.Random(seed).sample(range(count), round(no_reference_share * count)))
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if index >= count:
                break
            row = json.loads(line)
            reference = None if index in open_groups else row["ground_truth"]
            for key in SOLUTION_KEYS:
                rows.append(
                    {
                        "id": f"q{index}-{key}",
                        "prompt": row["question"],
                        "response": row[key]["solution"],
                        "reference": reference,
                        "group": f"q{index}",
                        "metadata": {"is_correct": bool(row[key]["is_correct"])},
                    }
                )
    return rows


def config(escalate: bool, local_tier: bool = False, rule: dict[str, Any] | None = None) -> FarmConfig:
    raw, _ = load_raw_config(None)  # the packaged default ensemble
    if local_tier:  # MiniLM similarity to the reference (CPU), in the rule's tier: the two can disagree or be unsure
        similarity = {"name": "similarity", "kind": "similarity", "device": "cpu", "floor": 0.5, "cost": "free"}
        raw["judges"] = [*raw["judges"], similarity]
    raw["bedrock"] = {**raw.get("bedrock", {}), "quotas": {}, "default_quota": {"rpm": 60_000, "tpm": 100_000_000}}
    raw["aggregation"] = {**raw.get("aggregation", {}), "escalate": {**(rule or {}), "enabled": escalate}}
    return parse_config(raw, source="benchmark config")


def quality(results: list[RewardResult], labels: dict[str, bool], ids: set[str]) -> dict[str, Any]:
    pairs = [(r.reward, labels[r.id]) for r in results if r.id in ids and r.reward is not None]
    if not pairs:
        return {"n": 0, "accuracy": None, "auc": None}
    area = auc([p[0] for p in pairs], [p[1] for p in pairs])
    return {
        "n": len(pairs),
        "accuracy": round(sum((s >= 0.5) == y for s, y in pairs) / len(pairs), 4),
        "auc": None if area is None else round(area, 4),
    }


async def run(rows: list[dict[str, Any]], farm: FarmConfig, emulator: EmulatorThread, workdir: Path, name: str) -> dict[str, Any]:
    source, out = workdir / "in.jsonl", workdir / f"{name}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    before = {m: s.received for m, s in emulator.stats().items()}
    started = time.monotonic()
    summary = await score_file(source, out, farm)
    elapsed = time.monotonic() - started
    after = emulator.stats()
    calls = sum(s.received - before.get(m, 0) for m, s in after.items())
    results = decode_results(b"[" + b",".join(out.read_bytes().splitlines()) + b"]")
    nova = [j.name for j in farm.judges if needs_bedrock(j)]
    labels = {r["id"]: r["metadata"]["is_correct"] for r in rows}
    with_reference = {r["id"] for r in rows if r["reference"] is not None}
    n = len(results)
    return {
        "rollouts": n,
        "status": dict(summary.status),
        "reach_nova_share": round(sum(reached(r, nova) for r in results) / n, 4),
        "escalated": sum(escalated(r) for r in results),
        "nova_calls": calls,
        "nova_calls_per_rollout": round(calls / n, 3),
        "input_tokens_per_rollout": round(summary.input_tokens / n, 1),
        "escalation": {k: dict(v) for k, v in summary.escalation.items()},
        "against_labels": quality(results, labels, set(labels)),
        "against_labels_with_reference": quality(results, labels, with_reference),
        "against_labels_without_reference": quality(results, labels, set(labels) - with_reference),
        "elapsed_s": round(elapsed, 2),
        "_rewards": {r.id: r.reward for r in results},
    }


def agreement(a: dict[str, float | None], b: dict[str, float | None]) -> dict[str, Any]:
    both: list[tuple[float, float]] = []
    for key, x in a.items():
        y = b.get(key)
        if x is not None and y is not None:
            both.append((x, y))
    return {
        "n": len(both),
        "same_side_of_0_5": round(sum((x >= 0.5) == (y >= 0.5) for x, y in both) / len(both), 4) if both else None,
        "mean_abs_difference": round(sum(abs(x - y) for x, y in both) / len(both), 4) if both else None,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=128, help="GSM8K questions (four rollouts each)")
    parser.add_argument("--no-reference-share", type=float, default=0.25, help="share of groups given no reference")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--local-tier",
        action="store_true",
        help="add a local judge (MiniLM similarity, declared free) to the rule's tier, in both runs (escalations by disagreement)",
    )
    parser.add_argument("--scope", choices=("group", "rollout"), default="group", help="escalate.scope")
    parser.add_argument("--max-spread", type=float, default=0.5, help="escalate.max_spread")
    args = parser.parse_args()
    rule = {"scope": args.scope, "max_spread": args.max_spread}

    def measure() -> dict[str, Any]:
        rows = groups(args.groups, args.no_reference_share, args.seed)
        settings = EmulatorSettings(latency_ms=args.latency_ms, latency_sigma=0.0, rpm=60_000, tpm=100_000_000)
        os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_EC2_METADATA_DISABLED": "true"})
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.pop("AWS_PROFILE", None)
        with EmulatorThread(settings) as emulator, tempfile.TemporaryDirectory() as tmp:
            os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = emulator.url
            baseline = asyncio.run(run(rows, config(False, args.local_tier), emulator, Path(tmp), "baseline"))
            cascade = asyncio.run(run(rows, config(True, args.local_tier, rule), emulator, Path(tmp), "cascade"))
        agree = agreement(cascade.pop("_rewards"), baseline.pop("_rewards"))
        return {
            "benchmark": "cascade",
            "figure": {
                "reach_nova_share": cascade["reach_nova_share"],
                "auc": cascade["against_labels"]["auc"],
                "accuracy": cascade["against_labels"]["accuracy"],
            },
            "baseline": {
                "reach_nova_share": baseline["reach_nova_share"],
                "auc": baseline["against_labels"]["auc"],
                "accuracy": baseline["against_labels"]["accuracy"],
            },
            "ratio": {
                "reach_nova_share": ratio(cascade["reach_nova_share"], baseline["reach_nova_share"]),
                "nova_calls_per_rollout": ratio(cascade["nova_calls_per_rollout"], baseline["nova_calls_per_rollout"]),
                "input_tokens_per_rollout": ratio(cascade["input_tokens_per_rollout"], baseline["input_tokens_per_rollout"]),
                "auc": ratio(cascade["against_labels"]["auc"], baseline["against_labels"]["auc"]),
                "accuracy": ratio(cascade["against_labels"]["accuracy"], baseline["against_labels"]["accuracy"]),
                "elapsed_s": ratio(cascade["elapsed_s"], baseline["elapsed_s"]),
            },
            "cascade_vs_baseline_reward_agreement": agree,
            "cascade": cascade,
            "always_nova": baseline,
            "parameters": {
                "groups": args.groups,
                "rollouts": len(rows),
                "no_reference_share": args.no_reference_share,
                "groups_without_reference": sum(1 for r in rows[:: len(SOLUTION_KEYS)] if r["reference"] is None),
                "latency_ms": args.latency_ms,
                "seed": args.seed,
                "ensemble": "packaged default (final_answer free; rubric nova-lite and preference nova-micro expensive)"
                + (" + similarity (MiniLM on CPU, floor 0.5, declared free: the first tier)" if args.local_tier else ""),
                "escalate": config(True, rule=rule).aggregation.escalate.model_dump(),
            },
        }

    print_report(measure)


if __name__ == "__main__":
    main()
