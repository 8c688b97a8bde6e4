"""Noise benchmark: sporadic 429s with no real overload must not collapse throughput.

The emulator answers 2.2% of calls `ThrottlingException` and 2.2% `ModelNotReadyException`
(both 429) at random, and its own quota is far above the farm's, so nothing is overloaded.
Closed-loop callers (more than the quota serves) call through `ConverseClient` with an online
deadline; each call stands for one judge verdict. Two runs against a freshly reset emulator:

- farm: the noise-aware limiter (429 share over a window, cut to the served rate);
- baseline: the farm's previous limiter (halve on every 429 episode, linear recovery).

Prints one JSON document: share of the quota achieved, and verdicts lost (calls that failed to
their caller) in each run, and their ratio.

    python benchmarks/noise.py --seconds 60 --rpm 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.legacy_quota import LegacyRegistry  # noqa: E402
from benchmarks.quota import MODEL, admin, closed_loop, start_emulator, watchdog  # noqa: E402


async def run(url: str, args: argparse.Namespace, legacy: bool) -> dict[str, Any]:
    from farm.bedrock import ConverseClient, ConverseRequest
    from farm.config import BedrockConfig, QuotaConfig, RetryConfig
    from farm.ratelimit import QuotaRegistry

    quota = QuotaConfig(rpm=args.rpm, tpm=args.tpm, burst_s=1.0)
    config = BedrockConfig(endpoint_url=url, max_concurrency=args.callers, retry=RetryConfig(max_attempts=6), quotas={MODEL: quota})
    registry = (LegacyRegistry if legacy else QuotaRegistry)(lambda m, r: quota)
    client = ConverseClient(config, registry)

    async def call(text: str) -> None:
        await client.converse(ConverseRequest(model=MODEL, user_text=text, max_tokens=64), deadline=time.monotonic() + args.deadline_s)

    try:
        result = await closed_loop(call, args.callers, args.seconds)
    finally:
        await client.aclose()
    limiter = registry.get(MODEL, "us-east-1")
    result.update(rate_cuts=limiter.cuts, throttle_events=limiter.throttle_events, final_scale=round(limiter.scale, 3))
    return result


def measure(url: str, args: argparse.Namespace, legacy: bool) -> dict[str, Any]:
    admin(url, "reset", "POST")
    result = asyncio.run(asyncio.wait_for(run(url, args, legacy), args.seconds + 90))
    seen = admin(url, "stats").get(MODEL, {})
    achieved_rpm = result["succeeded"] / args.seconds * 60.0
    verdicts = result["succeeded"] + result["failed_to_callers"]
    result.update(
        achieved_rpm=round(achieved_rpm, 1),
        share_of_quota=round(achieved_rpm / args.rpm, 4),
        verdicts_lost_share=round(result["failed_to_callers"] / verdicts, 4) if verdicts else None,
        requests_seen_by_emulator=seen.get("received", 0),
        faults_injected=seen.get("faults", {}),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rpm", type=int, default=2000, help="The farm's quota; the emulator allows 10x (no overload).")
    parser.add_argument("--tpm", type=int, default=100_000_000)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--deadline-s", type=float, default=10.0)
    parser.add_argument("--throttle", type=float, default=0.022)
    parser.add_argument("--not-ready", type=float, default=0.022)
    parser.add_argument("--timeout-s", type=float, default=None)
    args = parser.parse_args()
    for name, value in (("AWS_ACCESS_KEY_ID", "benchmark"), ("AWS_SECRET_ACCESS_KEY", "benchmark"), ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ.setdefault(name, value)
    emulator_args = argparse.Namespace(
        rpm=args.rpm * 10, tpm=args.tpm * 10, latency_ms=args.latency_ms, emulator_burst_s=2.0,
        faults=[f"throttle={args.throttle}", f"not_ready={args.not_ready}"],
    )  # fmt: skip
    process, url = start_emulator(emulator_args)
    timer = watchdog(args.timeout_s or 2 * args.seconds + 240, process.kill)
    try:
        farm = measure(url, args, legacy=False)
        baseline = measure(url, args, legacy=True)
    finally:
        timer.cancel()
        process.terminate()
        process.wait(timeout=10)
    report = {
        "benchmark": "noise",
        "figure": "share of the quota achieved and verdicts lost with 2.2% throttle + 2.2% not-ready faults and no overload",
        "params": {**vars(args), "model": MODEL, "emulator_rpm": args.rpm * 10},
        "farm": {"limiter": "429 share over a 10 s window; cut to the served rate", **farm},
        "baseline": {"limiter": "previous farm limiter: halve per 429 episode, linear 20 s recovery", **baseline},
        "ratio": {
            "share_of_quota_farm_over_baseline": round(farm["share_of_quota"] / baseline["share_of_quota"], 3)
            if baseline["share_of_quota"]
            else None,
            "verdicts_lost_baseline_minus_farm": round((baseline["verdicts_lost_share"] or 0) - (farm["verdicts_lost_share"] or 0), 4),
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
