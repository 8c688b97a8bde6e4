"""Bedrock cost and concurrency benchmark: one GRPO-style step of GSM8K rollouts, in dollars and seconds.

`farm score` runs the packaged default ensemble on `--groups` GSM8K questions (4 model solutions
each, one group per question) against `farm emulator` in its own process (latency
`--latency-ms`, quota `--rpm`/`--tpm` per model, plentiful by default so concurrency, not the
quota, decides the step time). Twice in one run, fresh emulator state each time:

- farm: today's defaults: the rubric on Nova 2 Lite through the `us.` inference profile,
  concurrency sized from the quota (`bedrock.max_concurrency` unset), prompt caching on;
- baseline: the previous defaults: the rubric on Nova Lite v1, `max_concurrency: 64`,
  prompt caching off.

- no_cache: today's defaults with `prompt_cache: false` on every judge (the caching baseline).

Figures: step time; Bedrock calls, prompt tokens (billed input + cache reads + cache writes) and
cache-read tokens per rollout; dollars per rollout and per step at the list prices in
`farm/cost.py` (checked on the date printed); the concurrency each used; and `prompt_cache`:
per judge (the emulator's per-model counts: rubric on Nova 2 Lite, preference on Nova Micro),
prompt tokens billed as input, read from and written to the cache, and dollars, cached against
no_cache. Prints one JSON document.

    python benchmarks/bedrock_cost.py --groups 32 --latency-ms 300 --rpm 20000
    python benchmarks/bedrock_cost.py --groups 32 --rubric-guide-chars 6000   # a long shared rubric: caching pays
    python benchmarks/bedrock_cost.py --groups 32 --reference-chars 6000      # a long shared reference: both judges cache it
    python benchmarks/bedrock_cost.py --groups 32 --reference-chars 6000 --comparison pairwise
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, gsm8k_rollouts, print_report  # noqa: E402
from benchmarks.quota import admin, start_emulator  # noqa: E402


def configs(args: argparse.Namespace, url: str) -> dict[str, dict[str, Any]]:
    base = yaml.safe_load((REPO / "farm" / "defaults" / "default.yaml").read_text())
    base.pop("emulator", None)
    base["cache"] = {"enabled": False}  # every rollout costs its calls
    base["batch_size"] = 4 * args.groups_per_batch
    if args.rubric_guide_chars:  # a house grading guide: the same long text in every rubric call
        guide = ("Follow the house grading guide: check each step, the units and the final line. " * 200)[: args.rubric_guide_chars]
        for judge in base["judges"]:
            if judge.get("kind") == "rubric":
                judge["task"] = "Grade the response to the task against each criterion.\n\n" + guide
    for judge in base["judges"]:
        if judge.get("kind") == "preference":
            judge["comparison"] = args.comparison
    quota = {"rpm": args.rpm, "tpm": args.tpm}
    farm = copy.deepcopy(base)
    farm["bedrock"] = {**farm["bedrock"], "endpoint_url": url, "expected_latency_s": args.latency_ms / 1000 * 1.5}
    farm["bedrock"]["quotas"] = {model: quota for model in farm["bedrock"]["quotas"]}
    old = copy.deepcopy(base)
    for judge in old["judges"]:
        if judge.get("kind") == "rubric":
            judge["model"] = "amazon.nova-lite-v1:0"
        if "model" in judge:
            judge.pop("service_tier", None)
            judge["prompt_cache"] = False
    old["bedrock"] = {
        "region": "us-east-1",
        "endpoint_url": url,
        "max_concurrency": 64,
        "quotas": {"amazon.nova-lite-v1:0": quota, "amazon.nova-micro-v1:0": quota},
    }
    no_cache = copy.deepcopy(farm)
    for judge in no_cache["judges"]:
        if "model" in judge:
            judge["prompt_cache"] = False
    return {"farm": farm, "no_cache": no_cache, "baseline": old}


async def one_run(name: str, raw: dict[str, Any], rows: list[dict[str, Any]], url: str, workdir: Path) -> dict[str, Any]:
    from farm.config import parse_config
    from farm.scorefile import score_file

    admin(url, "reset", "POST")
    config = parse_config(raw, source=name)
    source = workdir / f"{name}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = await score_file(source, workdir / f"{name}.out.jsonl", config, concurrency=8)
    stats = admin(url, "stats")
    n = summary.rollouts
    calls = sum(s["admitted"] for s in stats.values())
    prompt = sum(s["input_tokens"] + s["cache_read_tokens"] + s["cache_write_tokens"] for s in stats.values())
    return {
        "step_s": summary.elapsed_s,
        "rollouts": n,
        "status": dict(summary.status),
        "concurrency": config.bedrock.concurrency(),
        "models": sorted(stats),
        "calls_per_rollout": round(calls / n, 3),
        "prompt_tokens_per_rollout": round(prompt / n, 1),
        "cache_read_tokens_per_rollout": round(sum(s["cache_read_tokens"] for s in stats.values()) / n, 1),
        "output_tokens_per_rollout": round(sum(s["output_tokens"] for s in stats.values()) / n, 1),
        "throttled": sum(s["throttled"] for s in stats.values()),
        "usd_per_rollout": summary.cost_per_rollout_usd,
        "usd_per_step": summary.cost_usd,
        "usd_per_step_without_prompt_cache": summary.cost_without_prompt_cache_usd,
        "reward_mean": summary.reward_mean,
        "per_model": {model: _priced(model, s, n) for model, s in sorted(stats.items())},
    }


def _priced(model: str, stats: dict[str, Any], rollouts: int) -> dict[str, Any]:
    """One model's (one judge's) prompt tokens by how they were billed, and dollars at list prices."""
    from farm.cost import PriceTable, Usage

    usage = Usage(stats["input_tokens"], stats["output_tokens"], stats["cache_read_tokens"], stats["cache_write_tokens"])
    cost = PriceTable().cost(model, usage)
    return {
        "calls": stats["admitted"],
        "prompt_tokens": usage.prompt_tokens,
        "input_tokens_billed_as_input": usage.input_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_tokens": usage.output_tokens,
        "usd_per_step": None if cost is None else round(cost.usd, 6),
        "usd_per_rollout": None if cost is None else round(cost.usd / rollouts, 8),
    }


def cache_figures(cached: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    """Per judge model: the cached run's input side against the same step without prompt caching."""
    out: dict[str, Any] = {}
    for model, mine in cached["per_model"].items():
        other = plain["per_model"].get(model)
        if other is None:
            continue
        out[model] = {
            "cached": mine,
            "no_cache": other,
            "share_of_prompt_read_from_cache": round(mine["cache_read_tokens"] / mine["prompt_tokens"], 3)
            if mine["prompt_tokens"]
            else 0.0,
            "usd_ratio": round(mine["usd_per_step"] / other["usd_per_step"], 3) if mine["usd_per_step"] and other["usd_per_step"] else None,
        }
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from farm.cost import PRICES_CHECKED

    rows = gsm8k_rollouts(4 * args.groups)
    guide = (
        "Reference notes for graders: the worked solution below is checked line by line; units, rounding and the final line matter. " * 200
    )[: args.reference_chars]
    for row in rows:
        row["group"] = row["id"].split("-", 1)[0]
        if guide:  # the same long reference for every response to a question (a shared worked solution)
            row["reference"] = guide + "\n\n" + row["reference"]
    process, url = start_emulator(args)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            plans = configs(args, url)
            asyncio.run(one_run("warm-up", plans["baseline"], rows[:8], url, Path(tmp)))  # imports, first connections
            runs = {name: asyncio.run(one_run(name, raw, rows, url, Path(tmp))) for name, raw in plans.items()}
    finally:
        process.kill()
    farm, base, plain = runs["farm"], runs["baseline"], runs["no_cache"]
    return {
        "figure": f"GRPO-style step, {len(rows)} GSM8K rollouts in {args.groups} groups of 4, emulator {args.latency_ms:g} ms, "
        f"{args.rpm} rpm / {args.tpm} tpm per model: step time and dollars per rollout, today's defaults against the previous ones",
        "farm": farm,
        "baseline": base,
        "step_time_ratio": round(farm["step_s"] / base["step_s"], 3) if base["step_s"] else None,
        "usd_per_rollout_ratio": round(farm["usd_per_rollout"] / base["usd_per_rollout"], 3)
        if farm["usd_per_rollout"] and base["usd_per_rollout"]
        else None,
        "no_cache": plain,
        "prompt_cache": {
            "figure": "per judge model, today's defaults with prompt caching against the same step with `prompt_cache: false` (same run)",
            "models": cache_figures(farm, plain),
            "usd_per_step_ratio": round(farm["usd_per_step"] / plain["usd_per_step"], 3)
            if farm["usd_per_step"] and plain["usd_per_step"]
            else None,
            "step_time_ratio": round(farm["step_s"] / plain["step_s"], 3) if plain["step_s"] else None,
        },
        "prices_checked": PRICES_CHECKED,
        "params": vars(args),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=32)
    parser.add_argument("--groups-per-batch", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--rpm", type=int, default=20_000)
    parser.add_argument("--tpm", type=int, default=40_000_000)
    parser.add_argument("--emulator-burst-s", type=float, default=1.0)
    parser.add_argument("--rubric-guide-chars", type=int, default=0, help="add a grading guide this long to the rubric (0: none)")
    parser.add_argument("--reference-chars", type=int, default=0, help="put shared notes this long before each reference (0: none)")
    parser.add_argument("--comparison", choices=("listwise", "pairwise"), default="listwise", help="the preference judge's comparison")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    print_report(lambda: measure(args))


if __name__ == "__main__":
    main()
