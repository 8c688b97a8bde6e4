"""Unknown quota benchmark: the farm configured far above what the account really allows.

The packaged default ensemble (final answer + rubric on Nova 2 Lite + preference on nova-micro)
is configured at 2,000 requests/min per model; the emulator enforces 60 per model, as a new AWS
account often does. 50 GSM8K rollouts are scored twice against a freshly reset emulator:

- farm: `farm score` (the CLI, in its own process): the limiter learns the real quota from the
  429 rate, and offline calls wait for quota instead of failing;
- baseline: the same ensemble in-process with the previous limiter (halve per 429 episode,
  full configured burst) and online deadlines, as `farm score` ran before.

Prints one JSON document: results by status, throttled calls per successful call, and the
achieved rate per model after the first 30 s as a share of the real 60 rpm.

    python benchmarks/unknown_quota.py --rows 50 --real-rpm 60
"""

from __future__ import annotations

import argparse
import asyncio
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

from benchmarks.common import REPO, gsm8k_rollouts  # noqa: E402
from benchmarks.legacy_quota import LegacyRegistry  # noqa: E402
from benchmarks.quota import admin, start_emulator, watchdog  # noqa: E402

MODELS = ("us.amazon.nova-2-lite-v1:0", "amazon.nova-micro-v1:0")


def emulator_figures(url: str, real_rpm: int, after_s: float) -> dict[str, Any]:
    with __import__("urllib.request").request.urlopen(f"{url}/_emulator/stats?times=1", timeout=10) as response:
        stats = json.loads(response.read())
    out: dict[str, Any] = {"models": {}}
    admitted = throttled = 0
    for model in MODELS:
        seen = stats.get(model, {})
        times = sorted(seen.get("admitted_at", []))
        admitted += seen.get("admitted", 0)
        throttled += seen.get("throttled", 0)
        late = [t for t in times if times and t >= times[0] + after_s]
        span = (late[-1] - (times[0] + after_s)) if len(late) > 1 else 0.0
        rate = len(late) / span * 60.0 if span > 0 else None
        out["models"][model] = {
            "admitted": seen.get("admitted", 0),
            "throttled": seen.get("throttled", 0),
            "busy_s": round(times[-1] - times[0], 1) if times else 0.0,
            f"rpm_after_{after_s:g}s": round(rate, 1) if rate else None,
            f"share_of_real_quota_after_{after_s:g}s": round(rate / real_rpm, 3) if rate else None,
        }
    out["throttled_per_successful_call"] = round(throttled / admitted, 3) if admitted else None
    return out


def run_farm(url: str, source: Path, workdir: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url,
        "FARM_BACKEND": "bedrock",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.pop("RAY_ADDRESS", None)
    out = workdir / "farm.jsonl"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "farm.cli", "score", str(source), "--out", str(out)], env=env, capture_output=True, text=True, timeout=900
    )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        return {"error": done.stderr[-2000:], "elapsed_s": round(elapsed, 1)}
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    return {"status": summary["status"], "flags": summary["flags"], "elapsed_s": round(elapsed, 1), "judge_status": summary["judge_status"]}


async def run_baseline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from farm.batching import make_batches
    from farm.config import load_config
    from farm.ensemble import Ensemble
    from farm.wire import parse_rollouts

    config = load_config(None)
    ensemble = Ensemble.from_config(config, quotas=LegacyRegistry(config.quota_for), patient=False)
    gate = asyncio.Semaphore(4)
    status: Counter[str] = Counter()
    flags: Counter[str] = Counter()

    async def run(batch: Any) -> None:
        async with gate:
            for result in await ensemble.score(batch):
                status[result.status] += 1
                flags.update(result.flags)

    started = time.monotonic()
    try:
        await asyncio.gather(*(run(batch) for batch in make_batches(parse_rollouts(rows), config.batch_size)))
    finally:
        await ensemble.aclose()
    return {"status": dict(status), "flags": dict(flags), "elapsed_s": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--real-rpm", type=int, default=60, help="What the emulated account really allows, per model.")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--after-s", type=float, default=30.0, help="Achieved rate is measured after this warm-up.")
    parser.add_argument("--timeout-s", type=float, default=1500.0)
    args = parser.parse_args()
    for name, value in (("AWS_ACCESS_KEY_ID", "benchmark"), ("AWS_SECRET_ACCESS_KEY", "benchmark"), ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ.setdefault(name, value)
    emulator_args = argparse.Namespace(rpm=args.real_rpm, tpm=100_000_000, latency_ms=args.latency_ms, emulator_burst_s=1.0, faults=[])
    process, url = start_emulator(emulator_args)
    timer = watchdog(args.timeout_s, process.kill)
    rows = gsm8k_rollouts(args.rows)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "rows.jsonl"
            source.write_text("".join(json.dumps(r) + "\n" for r in rows))
            admin(url, "reset", "POST")
            farm = run_farm(url, source, Path(tmp))
            farm.update(emulator_figures(url, args.real_rpm, args.after_s))
            admin(url, "reset", "POST")
            os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = url
            baseline = asyncio.run(run_baseline(rows))
            baseline.update(emulator_figures(url, args.real_rpm, args.after_s))
    finally:
        timer.cancel()
        process.terminate()
        process.wait(timeout=10)
    ok = lambda run: run.get("status", {}).get("ok", 0)  # noqa: E731
    report = {
        "benchmark": "unknown_quota",
        "figure": "rollouts ok, throttled per successful call, and achieved rate after warm-up, farm configured at 2,000 rpm vs 60 real",
        "params": {
            **vars(args),
            "configured_rpm": 2000,
            "ensemble": "packaged default (final_answer, rubric on lite, preference on micro)",
        },
        "farm": {"how": "farm score (CLI process), noise-aware limiter, offline calls wait for quota", **farm},
        "baseline": {"how": "same ensemble in-process, previous limiter, online deadlines", **baseline},
        "ratio": {
            "ok_farm_over_baseline": round(ok(farm) / ok(baseline), 3) if ok(baseline) else None,
            "throttled_per_success_baseline_over_farm": round(
                baseline["throttled_per_successful_call"] / farm["throttled_per_successful_call"], 2
            )
            if farm.get("throttled_per_successful_call")
            else None,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
