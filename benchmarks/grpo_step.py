"""One GRPO step through `farm score`: Nova calls, input tokens and seconds per step, and what bounds it.

512 GSM8K rollouts in 64 groups of 8 (64 questions; each question's four real solutions twice,
the second copy with a trailing newline so nothing is a cache hit), scored with the packaged
default ensemble by `farm score` (its own process) against `farm emulator --latency-ms 300`
enforcing `--rpm` / `--tpm` per model. In the same run, each against a freshly reset emulator:

- new: the packaged default (listwise preference, 2 shuffled orders, reference anchor);
- new_workers: the same with `farm score --workers N` (N processes, 1/N of the quota each);
- baseline: the same ensemble with the preference judge as it was by default before
  (`comparison: pairwise`, `anchor: none`, `max_comparisons: 4`).

Per run: Nova calls per rollout, input tokens per rollout, output tokens per call (what
`maxTokens` must cover), `step_s` (the `farm score` process, start to exit), `scoring_s` (the
step itself: the summary's `elapsed_s`, from reading the file to the last result, without the
interpreter's start-up), the span the emulator was busy, partial/failed rollouts, and the CPU
seconds of the farm (user + system of the `farm score` process and its workers) and of the
emulator, per call; the load average around it (the machine may be shared).

`chain`: the slowest judge call chain, measured from what runs: one group is scored in this
process (after a warm-up group) against the idle emulator, and its wall time counts the rounds of
calls that wait on each other (`rounds` = its time / the emulator latency, at least 1);
`chain_s` = rounds x latency. `step_over_chain` compares both step figures with it, and
`cpu_floor_s`: the least the scoring can take on this machine, from the CPU it used:
`farm_step_cpu_s` (the farm's CPU less the interpreter's start-up, `startup_cpu_s`, measured by
importing what `farm score` imports) is spent by N processes that each run on one core at a time
(the event loop and the screening thread share one interpreter), and with the emulator's CPU it
shares the machine's cores: max(farm_step_cpu / N, (farm_step_cpu + emulator_cpu) / cores). When
it is above 1.5 x chain_s, the target cannot be met on this machine, whatever the scheduling.

    python benchmarks/grpo_step.py                 # 2,000 rpm / 4M tpm per model
    python benchmarks/grpo_step.py --rpm 1000      # target: 0 partial
    python benchmarks/grpo_step.py --rpm 20000 --tpm 40000000   # target: step <= 1.5 x chain_s
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import NormalDist
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, print_report  # noqa: E402
from benchmarks.quota import admin, start_emulator, watchdog  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "gsm8k_model_solutions.jsonl"
SOLUTION_KEYS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
_PROBE_LATENCY_S = 2.0
"""Latency of every call while the chain is measured: long enough that CPU cannot look like a round."""
BASELINE_PREFERENCE = {"comparison": "pairwise", "anchor": "none", "max_comparisons": 4}


def step_rollouts(groups: int, group_size: int, offset: int = 0) -> list[dict[str, Any]]:
    """`groups` questions (from the `offset`-th), `group_size` rollouts each: the question's real
    solutions, repeated with a trailing newline added per copy (new content: no cache hits, same answer)."""
    rows: list[dict[str, Any]] = []
    with SHARED.open(encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if index < offset:
                continue
            if index >= offset + groups:
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


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc; 0.0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def startup_cpu_s() -> float:
    """CPU seconds of a fresh interpreter importing what `farm score` imports before it scores."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = "import farm.cli, farm.scorefile, farm.scoreworkers, aiobotocore.session, aiobotocore.config"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_step(
    url: str, source: Path, config: Path, workdir: Path, rows: int, emulator_pid: int, startup_s: float, workers: int = 1
) -> dict[str, Any]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url,
        "FARM_BACKEND": "bedrock",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.pop("RAY_ADDRESS", None)
    out = workdir / f"{config.stem}-w{workers}.jsonl"
    admin(url, "reset", "POST")
    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    emulator_before = process_cpu_s(emulator_pid)
    started = time.monotonic()
    command = [sys.executable, "-m", "farm.cli", "score", str(source), "--out", str(out), "--config", str(config), "--max-degraded", "1"]
    done = subprocess.run(command + ["--workers", str(workers)], env=env, capture_output=True, text=True, timeout=1800)
    elapsed = time.monotonic() - started
    emulator_cpu_s = process_cpu_s(emulator_pid) - emulator_before
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
    cores = os.cpu_count() or 1
    return {
        "workers": workers,
        "nova_calls_per_rollout": round(calls / rows, 3),
        "input_tokens_per_rollout": round(input_tokens / rows, 1),
        "output_tokens_per_call": round(output_tokens / max(calls, 1), 1),
        "cost_usd": summary.get("cost_usd"),
        "cost_per_rollout_usd": summary.get("cost_per_rollout_usd"),
        "step_s": round(elapsed, 2),
        "scoring_s": summary.get("elapsed_s"),
        "emulator_busy_s": round(last - first, 2) if calls else 0.0,
        "farm_cpu_s": round(farm_cpu_s, 2),
        "farm_cpu_ms_per_call": round(1000 * farm_cpu_s / max(calls, 1), 2),
        "farm_cpu_ms_per_rollout": round(1000 * farm_cpu_s / rows, 2),
        "emulator_cpu_s": round(emulator_cpu_s, 2),
        "emulator_cpu_ms_per_call": round(1000 * emulator_cpu_s / max(calls, 1), 2),
        "startup_cpu_s": round(startup_s, 2),
        "farm_step_cpu_s": round(farm_cpu_s - startup_s, 2),
        "cpu_floor_s": round(max((farm_cpu_s - startup_s) / workers, (farm_cpu_s - startup_s + emulator_cpu_s) / cores), 2),
        "load_average_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "partial": status.get("partial", 0),
        "failed": status.get("failed", 0),
        "ok": status.get("ok", 0),
        "throttled_429": throttled,
        "models": per_model,
    }


def post_settings(url: str, patch: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{url}/_emulator/settings", method="POST", data=json.dumps(patch).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def measure_chain(url: str, config: Path, rows: list[dict[str, Any]], group_size: int, latency_s: float, calls: int) -> dict[str, Any]:
    """The slowest judge call chain, from what runs: groups scored in this process, one at a time,
    with the step's config, while the emulator answers every call in exactly `_PROBE_LATENCY_S`
    (so this process's CPU cannot pass for a round). Calls admitted more than half that apart
    wait on each other: `rounds` counts them. `chain_s` = rounds x the step's mean latency;
    `slowest_call_s` adds what the slowest of the step's `calls` log-normal latencies adds to one
    round (the emulator's spread), since a step waits for its slowest call."""
    from farm.config import load_config
    from farm.ensemble import Ensemble
    from farm.wire import parse_rollout

    os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = url
    groups = [[parse_rollout(r, where="chain") for r in rows[k : k + group_size]] for k in range(0, 3 * group_size, group_size)]
    before = admin(url, "settings")

    async def probe() -> tuple[int, int]:
        ensemble = Ensemble.from_config(load_config(config), patient=True)
        rounds = calls_per_group = 0
        try:
            await ensemble.score(groups[0])  # warm-up: imports, client, connections
            for group in groups[1:]:
                admin(url, "reset", "POST")
                await ensemble.score(group)
                stats = admin(url, "stats?times=1")
                times = sorted(t for s in stats.values() if isinstance(s, dict) for t in s.get("admitted_at") or [])
                calls_per_group = max(calls_per_group, len(times))
                rounds = max(rounds, 1 + sum(b - a > _PROBE_LATENCY_S / 2 for a, b in itertools.pairwise(times)))
            return rounds, calls_per_group
        finally:
            await ensemble.aclose()

    post_settings(url, {"latency_ms": _PROBE_LATENCY_S * 1000, "latency_sigma": 0})
    try:
        rounds, calls_per_group = asyncio.run(probe())
    finally:
        post_settings(url, {"latency_ms": before["latency_ms"], "latency_sigma": before["latency_sigma"]})
        admin(url, "reset", "POST")
    sigma = float(before["latency_sigma"])
    tail = math.exp(sigma * NormalDist().inv_cdf(1 - 1 / (calls + 1)) - sigma * sigma / 2) if sigma > 0 and calls else 1.0
    return {
        "how": f"groups of {group_size} scored alone in-process, every call taking {_PROBE_LATENCY_S} s: rounds that wait on each other",
        "calls_per_group": calls_per_group,
        "rounds": rounds,
        "chain_s": round(rounds * latency_s, 3),
        "slowest_call_s": round((rounds - 1 + tail) * latency_s, 3),
    }


def measure_warm(url: str, config: Path, warm: list[dict[str, Any]], step: list[dict[str, Any]], emulator_pid: int) -> dict[str, Any]:
    """The step as a trainer's long-lived process sees it: scored in this process by an ensemble
    that already scored one step (imports done, client and connections open), batches sent as
    `farm score` sends them. CPU is this process's (its screening thread included)."""
    from farm.batching import make_batches
    from farm.config import load_config
    from farm.ensemble import Ensemble
    from farm.scorefile import batches_in_flight
    from farm.wire import parse_rollout

    os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = url
    farm_config = load_config(config)

    async def score(ensemble: Ensemble, rows: list[dict[str, Any]]) -> list[Any]:
        gate = asyncio.Semaphore(batches_in_flight(farm_config))
        rollouts = [parse_rollout(r, where="step") for r in rows]

        async def run(batch: list[Any]) -> list[Any]:
            async with gate:
                return await ensemble.score(batch)

        return [r for batch in await asyncio.gather(*(run(b) for b in make_batches(rollouts, farm_config.batch_size))) for r in batch]

    async def both() -> tuple[float, float, float, list[Any]]:
        ensemble = Ensemble.from_config(farm_config, patient=True)
        try:
            await score(ensemble, warm)
            admin(url, "reset", "POST")
            cpu, emulator = time.process_time(), process_cpu_s(emulator_pid)
            started = time.monotonic()
            results = await score(ensemble, step)
            return time.monotonic() - started, time.process_time() - cpu, process_cpu_s(emulator_pid) - emulator, results
        finally:
            await ensemble.aclose()

    load_before = os.getloadavg()
    elapsed, cpu, emulator_cpu, results = asyncio.run(both())
    calls = sum(s.get("admitted", 0) for s in admin(url, "stats").values() if isinstance(s, dict))
    cores = os.cpu_count() or 1
    return {
        "how": "in-process, after a warm-up step of other questions: no start-up, connections open",
        "step_s": round(elapsed, 2),
        "calls": calls,
        "ok": sum(r.status == "ok" for r in results),
        "farm_cpu_s": round(cpu, 2),
        "farm_cpu_ms_per_call": round(1000 * cpu / max(calls, 1), 2),
        "farm_cpu_ms_per_rollout": round(1000 * cpu / len(step), 2),
        "emulator_cpu_s": round(emulator_cpu, 2),
        "cpu_floor_s": round(max(cpu, (cpu + emulator_cpu) / cores), 2),
        "load_average_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
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
            default = config_file(directory, args.rpm, args.tpm, baseline=False)
            startup = startup_cpu_s()
            new = run_step(url, source, default, directory, len(rows), process.pid, startup)
            spread = run_step(url, source, default, directory, len(rows), process.pid, startup, args.workers) if args.workers > 1 else None
            baseline_config = config_file(directory, args.rpm, args.tpm, baseline=True)
            baseline = run_step(url, source, baseline_config, directory, len(rows), process.pid, startup)
            calls = round(new.get("nova_calls_per_rollout", 0) * len(rows))
            warm = measure_warm(url, default, step_rollouts(args.groups, args.group_size, offset=args.groups), rows, process.pid)
            chain = measure_chain(url, default, rows, args.group_size, args.latency_ms / 1000.0, calls)
    finally:
        timer.cancel()
        process.terminate()
        process.wait(timeout=10)
    chain_s = chain["chain_s"]

    def ratio(key: str) -> float | None:
        return round(new[key] / baseline[key], 3) if new.get(key) is not None and baseline.get(key) else None

    def over_chain(run: dict[str, Any] | None) -> dict[str, Any] | None:
        if run is None or "step_s" not in run or "scoring_s" not in run:
            return None
        return {
            "workers": run["workers"],
            "step": round(run["step_s"] / chain_s, 2),
            "scoring": round(run["scoring_s"] / chain_s, 2),
            "cpu_floor": round(run["cpu_floor_s"] / chain_s, 2),
            "scoring_over_slowest_call": round(run["scoring_s"] / chain["slowest_call_s"], 2),
        }

    return {
        "benchmark": "grpo_step",
        "figure": "one GRPO step (farm score, default ensemble): Nova calls and input tokens per rollout, step seconds over the "
        "slowest call chain, CPU seconds of farm and emulator, partial rollouts",
        "params": {**vars(args), "rollouts": len(rows), "cores": os.cpu_count()},
        "targets": {
            "nova_calls_per_rollout": 2.0,
            "input_tokens_per_rollout": 1500,
            "step_s": 30,
            "partial_at_1000_rpm": 0,
            "step_over_chain_at_20000_rpm": 1.5,
        },
        "new": {"how": "packaged default ensemble (listwise preference, reference anchor), one process", **new},
        **(
            {"new_workers": {"how": f"the same, farm score --workers {args.workers} (1/{args.workers} of the quota each)", **spread}}
            if spread
            else {}
        ),
        "baseline": {"how": f"same ensemble, preference {BASELINE_PREFERENCE} (the default before)", **baseline},
        "new_warm": warm,
        "ratio_new_over_baseline": {
            k: ratio(k) for k in ("nova_calls_per_rollout", "input_tokens_per_rollout", "step_s", "emulator_busy_s", "cost_per_rollout_usd")
        },
        "chain": chain,
        "step_over_chain": {
            "new": over_chain(new),
            "new_workers": over_chain(spread),
            "baseline": over_chain(baseline),
            "new_warm": {"step": round(warm["step_s"] / chain_s, 2), "cpu_floor": round(warm["cpu_floor_s"] / chain_s, 2)},
        },
        "workers_speedup_scoring": round(new["scoring_s"] / spread["scoring_s"], 2) if spread and spread.get("scoring_s") else None,
    }


def step_arguments(doc: str | None, rpm: int) -> argparse.ArgumentParser:
    """The arguments every GRPO-step benchmark takes (quota, emulator latency, step shape)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpm", type=int, default=rpm, help="Requests per minute per model (configured and enforced).")
    parser.add_argument("--tpm", type=int, default=4_000_000, help="Tokens per minute per model (configured and enforced).")
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--burst-s", type=float, default=2.0, help="Emulator: seconds of quota admitted at once (its default).")
    parser.add_argument("--groups", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--timeout-s", type=float, default=3000.0)
    return parser


def main() -> None:
    parser = step_arguments(__doc__, rpm=2000)
    parser.add_argument("--workers", type=int, default=2, help="Also run the default with `farm score --workers N` (1: skip).")
    args = parser.parse_args()
    print_report(lambda: measure(args))


if __name__ == "__main__":
    main()
