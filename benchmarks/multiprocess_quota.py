"""Four `farm score` processes on one AWS account: one quota, or four?

Starts the emulator with a quota of `--rpm` requests/min, then runs four `farm score` processes
at once, each configured with that same quota and given its own rows, twice:

- farm: with RAY_ADDRESS pointing at a Ray cluster started by this benchmark, the processes take
  leases from its quota actor, so together they spend one quota;
- baseline: without RAY_ADDRESS, each process holds a quota of its own (as every process did
  before), so together they offer four.

Prints one JSON document: the peak calls the emulator admitted in any 60 s window as a share of
the quota, the 429 share, results by status, and their ratio.

    python benchmarks/multiprocess_quota.py --rpm 600 --rows 150
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO  # noqa: E402
from benchmarks.quota import admin, start_emulator, watchdog  # noqa: E402

MODEL = "amazon.nova-lite-v1:0"
PROCESSES = 4


def write_inputs(workdir: Path, rows: int, rpm: int) -> tuple[Path, list[Path]]:
    config = workdir / "farm.yaml"
    config.write_text(
        json.dumps(
            {
                "judges": [
                    {
                        "name": "rubric",
                        "kind": "rubric",
                        "model": MODEL,
                        "deadline_s": 60,
                        "criteria": [{"name": "correctness", "description": "The final answer is correct."}],
                    }
                ],
                "bedrock": {"quotas": {MODEL: {"rpm": rpm, "tpm": 100_000_000, "burst_s": 1.0}}},
                "cache": {"enabled": False},
            }
        )
    )
    inputs = []
    for p in range(PROCESSES):
        path = workdir / f"rows-{p}.jsonl"
        path.write_text(
            "".join(
                json.dumps({"id": f"p{p}-{i}", "prompt": "What is 6*7?", "response": f"6*7 = 42. A: 42 ({p}-{i})", "reference": "42"})
                + "\n"
                for i in range(rows)
            )
        )
        inputs.append(path)
    return config, inputs


def run_processes(url: str, config: Path, inputs: list[Path], ray_address: str | None) -> dict[str, Any]:
    env = {**os.environ, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url, "FARM_BACKEND": "bedrock", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    started = time.monotonic()
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "farm.cli", "score", str(path), "--out", str(path.with_suffix(".out.jsonl")), "--config", str(config)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in inputs
    ]
    said: list[str] = []
    for child in children:
        _, err = child.communicate(timeout=900)
        said.extend(line for line in err.splitlines() if line.startswith("quota:"))
    elapsed = time.monotonic() - started
    status: Counter[str] = Counter()
    for path in inputs:
        summary = json.loads(path.with_suffix(".out.jsonl").with_name(path.with_suffix(".out.jsonl").name + ".summary.json").read_text())
        status.update(summary["status"])
    return {
        "elapsed_s": round(elapsed, 1),
        "status": dict(status),
        "processes_said": sorted(set(said)),
        "exit_codes": [c.returncode for c in children],
    }


def figures(url: str, rpm: int) -> dict[str, Any]:
    seen = admin(url, "stats").get(MODEL, {})
    received, throttled = seen.get("received", 0), seen.get("throttled", 0)
    return {
        "received_by_emulator": received,
        "throttled_at_emulator": throttled,
        "throttled_share": round(throttled / received, 4) if received else 0.0,
        "peak_admitted_60s": seen.get("peak_admitted_60s"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--rows", type=int, default=150, help="Rows per process.")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--timeout-s", type=float, default=1200.0)
    args = parser.parse_args()
    for name, value in (("AWS_ACCESS_KEY_ID", "benchmark"), ("AWS_SECRET_ACCESS_KEY", "benchmark"), ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ.setdefault(name, value)
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="ray-bench-"))  # a private Ray: never another user's cluster
    import ray

    emulator_args = argparse.Namespace(rpm=args.rpm, tpm=100_000_000, latency_ms=args.latency_ms, emulator_burst_s=1.0, faults=[])
    process, url = start_emulator(emulator_args)
    timer = watchdog(args.timeout_s, process.kill)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config, inputs = write_inputs(Path(tmp), args.rows, args.rpm)
            ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
            address = ray.get_runtime_context().gcs_address
            admin(url, "reset", "POST")
            farm = run_processes(url, config, inputs, address)
            farm.update(figures(url, args.rpm))
            ray.shutdown()
            admin(url, "reset", "POST")
            baseline = run_processes(url, config, inputs, None)
            baseline.update(figures(url, args.rpm))
    finally:
        timer.cancel()
        process.terminate()
        process.wait(timeout=10)
    for run in (farm, baseline):
        run["offered_over_quota"] = round(run["received_by_emulator"] / max(1.0, run["elapsed_s"]) * 60 / args.rpm, 3)
        run["peak_admitted_60s_over_quota"] = round((run["peak_admitted_60s"] or 0) / args.rpm, 3)
    report = {
        "benchmark": "multiprocess_quota",
        "figure": "4 farm score processes on one quota: offered load and 429 share, shared cluster quota vs one quota per process",
        "params": {**vars(args), "processes": PROCESSES, "model": MODEL},
        "farm": {"how": "RAY_ADDRESS set: leases from the cluster's quota actor", **farm},
        "baseline": {"how": "no RAY_ADDRESS: a quota per process", **baseline},
        "ratio": {
            "offered_over_quota_baseline_over_farm": round(baseline["offered_over_quota"] / farm["offered_over_quota"], 3)
            if farm["offered_over_quota"]
            else None,
            "throttled_share_baseline_minus_farm": round(baseline["throttled_share"] - farm["throttled_share"], 4),
            "elapsed_baseline_over_farm": round(baseline["elapsed_s"] / farm["elapsed_s"], 3) if farm["elapsed_s"] else None,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
