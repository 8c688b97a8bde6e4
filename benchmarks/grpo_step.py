"""One GRPO step through `farm score`: Nova calls, input tokens and seconds per step.

512 GSM8K rollouts in 64 groups of 8 (64 questions; each question's four real solutions twice,
the second copy with a trailing newline so nothing is a cache hit), scored with the packaged
default ensemble by `farm score` (its own process) against `farm emulator --latency-ms 300`
enforcing `--rpm` / `--tpm` per model. Twice, in the same run, against a freshly reset emulator:

- new: the packaged default (listwise preference, 2 shuffled orders, reference anchor);
- baseline: the same ensemble with the preference judge as it was by default before
  (`comparison: pairwise`, `anchor: none`, `max_comparisons: 4`).

Prints one JSON document: per run, Nova calls per rollout, input tokens per rollout, output
tokens per call (what `maxTokens` must cover), step seconds (the `farm score` process, start to
exit, and the span the emulator was busy), partial/failed rollouts; and new / baseline ratios.
`chain_s` is the slowest single judge call chain (one Converse call at the emulator's latency:
every judge asks once per rollout or group, concurrently), for the step-time bound.
`farm_cpu_s` / `farm_cpu_ms_per_call`: CPU the `farm score` process spent (user + system, its
start-up included), which bounds the step when quota is plentiful and cores are few.

    python benchmarks/grpo_step.py                 # 2,000 rpm / 4M tpm per model
    python benchmarks/grpo_step.py --rpm 1000      # target: 0 partial
    python benchmarks/grpo_step.py --rpm 20000     # target: step time <= 1.5 x chain_s
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, print_report  # noqa: E402
from benchmarks.quota import admin, start_emulator, watchdog  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "gsm8k_model_solutions.jsonl"
SOLUTION_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
BASELINE_PREFERENCE = {"comparison": "pairwise", "anchor": "none", "max_comparisons": 4}


def step_rollouts(groups: int, group_size: int) -> list[dict[str, Any]]:
    """`groups` questions, `group_size` rollouts each: the question's real solutions, repeated
    with a trailing newline added per copy (new content: no cache hits, same answer)."""
    rows: list[dict[str, Any]] = []
    with SHARED.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if index >= groups:
                break
            row = json.loads(line)
            for k in range(group_size):
                key = SOLUTION_KEYS[k % len(SOLUTION_KEYS)]
                response = row[key]["solution"] + "\n" * (k // len(SOLUTION_KEYS))
                rows.append(
                    {
                        "id": f"q{index}-{k}",
                        "prompt": row["question"],
                        "response": response,
                        "reference": row["ground_truth"],
                        "group": f"q{index}",
                    }
                )
    return rows


def config_file(directory: Path, rpm: int, tpm: int, baseline: bool) -> Path:
    from farm.config import load_raw_config

    raw, _ = load_raw_config(None)
    bedrock = dict(raw.get("bedrock", {}))
    models = {j["model"] for j in raw["judges"] if "model" in j}
    bedrock["quotas"] = {**bedrock.get("quotas", {}), **{m: {"rpm": rpm, "tpm": tpm} for m in models}}
    raw = {**raw, "bedrock": bedrock}
    if baseline:
        raw["judges"] = [{**j, **BASELINE_PREFERENCE} if j.get("kind") == "preference" else j for j in raw["judges"]]
    path = directory / ("baseline.yaml" if baseline else "default.yaml")
    path.write_text(json.dumps(raw))  # JSON is YAML
    return path


def run_step(url: str, source: Path, config: Path, workdir: Path, rows: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url,
        "FARM_BACKEND": "bedrock",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.pop("RAY_ADDRESS", None)
    out = workdir / f"{config.stem}.jsonl"
    admin(url, "reset", "POST")
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "farm.cli", "score", str(source), "--out", str(out), "--config", str(config), "--max-degraded", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    elapsed = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    farm_cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if done.returncode not in (0, 3):
        return {"error": done.stderr[-2000:], "step_s": round(elapsed, 1)}
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    stats = admin(url, "stats?times=1")
    calls = input_tokens = output_tokens = throttled = 0
    first, last = float("inf"), 0.0
    per_model: dict[str, Any] = {}
    for model, seen in stats.items():
        if not isinstance(seen, dict) or "admitted" not in seen:
            continue
        calls += seen["admitted"]
        throttled += seen.get("throttled", 0)
        input_tokens += seen.get("input_tokens", 0)
        output_tokens += seen.get("output_tokens", 0)
        times = seen.get("admitted_at") or []
        if times:
            first, last = min(first, min(times)), max(last, max(times))
        per_model[model] = {
            "calls_per_rollout": round(seen["admitted"] / rows, 3),
            "input_tokens_per_rollout": round(seen.get("input_tokens", 0) / rows, 1),
            "output_tokens_per_call": round(seen.get("output_tokens", 0) / max(seen["admitted"], 1), 1),
            "throttled": seen.get("throttled", 0),
        }
    status = summary.get("status", {})
    return {
        "nova_calls_per_rollout": round(calls / rows, 3),
        "input_tokens_per_rollout": round(input_tokens / rows, 1),
        "output_tokens_per_call": round(output_tokens / max(calls, 1), 1),
        "cost_usd": summary.get("cost_usd"),
        "cost_per_rollout_usd": summary.get("cost_per_rollout_usd"),
        "farm_cpu_s": round(farm_cpu_s, 1),
        "farm_cpu_ms_per_call": round(1000 * farm_cpu_s / max(calls, 1), 2),
        "step_s": round(elapsed, 1),
        "emulator_busy_s": round(last - first, 1) if calls else 0.0,
        "partial": status.get("partial", 0),
        "failed": status.get("failed", 0),
        "ok": status.get("ok", 0),
        "throttled_429": throttled,
        "models": per_model,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    for name, value in (("AWS_ACCESS_KEY_ID", "benchmark"), ("AWS_SECRET_ACCESS_KEY", "benchmark"), ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ.setdefault(name, value)
    emulator_args = argparse.Namespace(rpm=args.rpm, tpm=args.tpm, latency_ms=args.latency_ms, emulator_burst_s=args.burst_s, faults=[])
    process, url = start_emulator(emulator_args)
    timer = watchdog(args.timeout_s, process.kill)
    rows = step_rollouts(args.groups, args.group_size)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            source = directory / "step.jsonl"
            source.write_text("".join(json.dumps(r) + "\n" for r in rows))
            new = run_step(url, source, config_file(directory, args.rpm, args.tpm, baseline=False), directory, len(rows))
            baseline = run_step(url, source, config_file(directory, args.rpm, args.tpm, baseline=True), directory, len(rows))
    finally:
        timer.cancel()
        process.terminate()
        process.wait(timeout=10)
    chain_s = args.latency_ms / 1000.0

    def ratio(key: str) -> float | None:
        return round(new[key] / baseline[key], 3) if new.get(key) is not None and baseline.get(key) else None

    return {
        "benchmark": "grpo_step",
        "figure": "one GRPO step (farm score, default ensemble): Nova calls and input tokens per rollout, step seconds, partial rollouts",
        "params": {**vars(args), "rollouts": len(rows)},
        "targets": {"nova_calls_per_rollout": 2.0, "input_tokens_per_rollout": 1500, "step_s": 30, "partial_at_1000_rpm": 0},
        "new": {"how": "packaged default ensemble (listwise preference, reference anchor)", **new},
        "baseline": {"how": f"same ensemble, preference {BASELINE_PREFERENCE} (the default before)", **baseline},
        "ratio_new_over_baseline": {
            k: ratio(k) for k in ("nova_calls_per_rollout", "input_tokens_per_rollout", "step_s", "emulator_busy_s", "cost_per_rollout_usd")
        },
        "chain_s": chain_s,
        "step_over_chain": {
            "new_step": round(new["step_s"] / chain_s, 1) if "step_s" in new else None,
            "new_emulator_busy_plus_one_call": round((new.get("emulator_busy_s", 0.0) + chain_s) / chain_s, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpm", type=int, default=2000, help="Requests per minute per model (configured and enforced).")
    parser.add_argument("--tpm", type=int, default=4_000_000, help="Tokens per minute per model (configured and enforced).")
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--burst-s", type=float, default=2.0, help="Emulator: seconds of quota admitted at once (its default).")
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--timeout-s", type=float, default=3000.0)
    args = parser.parse_args()
    print_report(lambda: measure(args))


if __name__ == "__main__":
    main()
