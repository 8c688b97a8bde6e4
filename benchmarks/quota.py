"""Quota benchmark: more load than the quota allows, the farm's client against plain aiobotocore.

Starts `farm emulator` in its own process with an RPM quota and ~200 ms latency, then runs, one
after the other against a freshly reset emulator:

- farm: `ConverseClient` (client-side token buckets, AIMD, retries within a deadline);
- baseline: plain aiobotocore with botocore's `adaptive` retry mode and unbounded concurrency.

Both face the same closed-loop load: `--callers` concurrent callers, each calling again as soon
as its previous call returns. Prints one JSON document.

    python benchmarks/quota.py --seconds 60 --rpm 600 --latency-ms 200 --callers 64

A watchdog ends the run with an error document after `--timeout-s` (one run once hung after
its baseline phase).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

MODEL = "amazon.nova-lite-v1:0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def admin(url: str, path: str, method: str = "GET") -> Any:
    request = urllib.request.Request(f"{url}/_emulator/{path}", method=method, data=b"{}" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def start_emulator(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        sys.executable, "-m", "farm.cli", "emulator", "--port", str(port), "--rpm", str(args.rpm),
        "--tpm", str(args.tpm), "--latency-ms", str(args.latency_ms), "--burst-s", str(args.emulator_burst_s),
    ]  # fmt: skip
    for fault in getattr(args, "faults", None) or ():
        command += ["--fault", fault]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            admin(url, "stats")
            return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("emulator did not start")


async def closed_loop(call: Any, callers: int, seconds: float) -> dict[str, Any]:
    """Run `callers` loops of `call()` for `seconds`; count what callers saw."""
    succeeded = failed = 0
    errors: dict[str, int] = {}
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def caller(index: int) -> None:
        nonlocal succeeded, failed
        n = 0
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                await call(f"caller {index} request {n}")
            except Exception as exc:  # noqa: BLE001 - counted, not hidden: every failure a caller would see
                if time.monotonic() < stop_at:
                    failed += 1
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            else:
                if time.monotonic() <= stop_at:
                    succeeded += 1
                    latencies.append(time.monotonic() - started)
            n += 1

    tasks = [asyncio.create_task(caller(i)) for i in range(callers)]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    # a caller stuck in a connection that never closes must not hang the benchmark
    await asyncio.wait(tasks, timeout=30)
    latencies.sort()
    return {
        "succeeded": succeeded,
        "failed_to_callers": failed,
        "caller_errors": errors,
        "p50_call_s": _quantile(latencies, 0.5),
        "p99_call_s": _quantile(latencies, 0.99),
        "max_call_s": round(latencies[-1], 3) if latencies else None,
    }


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 3)


async def run_farm(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from farm.bedrock import ConverseClient, ConverseRequest
    from farm.config import BedrockConfig, QuotaConfig, RetryConfig
    from farm.ratelimit import QuotaRegistry

    quota = QuotaConfig(rpm=args.rpm, tpm=args.tpm, burst_s=1.0)
    config = BedrockConfig(endpoint_url=url, max_concurrency=args.callers, retry=RetryConfig(max_attempts=6), quotas={MODEL: quota})
    client = ConverseClient(config, QuotaRegistry(lambda m, r: quota))

    async def call(text: str) -> None:
        await client.converse(ConverseRequest(model=MODEL, user_text=text, max_tokens=64), deadline=time.monotonic() + args.deadline_s)

    try:
        return await closed_loop(call, args.callers, args.seconds)
    finally:
        await client.aclose()


async def run_baseline(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    config = AioConfig(max_pool_connections=args.callers, retries={"mode": "adaptive"})
    async with get_session().create_client("bedrock-runtime", region_name="us-east-1", endpoint_url=url, config=config) as client:

        async def call(text: str) -> None:
            await client.converse(
                modelId=MODEL,
                messages=[{"role": "user", "content": [{"text": text}]}],
                inferenceConfig={"maxTokens": 64, "temperature": 0},
            )

        return await closed_loop(call, args.callers, args.seconds)


def watchdog(seconds: float, cleanup: Any = None) -> threading.Timer:
    """Print one JSON error document and exit if the benchmark runs past `seconds`."""

    def expire() -> None:
        print(json.dumps({"error": f"benchmark exceeded its {seconds:g}s timeout"}), flush=True)
        if cleanup is not None:
            cleanup()
        os._exit(2)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer


def measure(name: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    admin(url, "reset", "POST")
    runner = run_farm if name == "farm" else run_baseline
    result = asyncio.run(asyncio.wait_for(runner(url, args), args.seconds + 60))
    seen = admin(url, "stats").get(MODEL, {})
    received, throttled = seen.get("received", 0), seen.get("throttled", 0)
    achieved_rpm = result["succeeded"] / args.seconds * 60.0
    result.update(
        achieved_rpm=round(achieved_rpm, 1),
        share_of_quota=round(achieved_rpm / args.rpm, 4),
        requests_seen_by_emulator=received,
        throttled_at_emulator=throttled,
        throttled_share=round(throttled / received, 4) if received else 0.0,
        peak_admitted_60s=seen.get("peak_admitted_60s"),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rpm", type=int, default=600)
    parser.add_argument("--tpm", type=int, default=2_000_000)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--deadline-s", type=float, default=60.0)
    parser.add_argument("--emulator-burst-s", type=float, default=2.0)
    parser.add_argument("--timeout-s", type=float, default=None, help="Give up (exit 2) after this long (default: 2 x seconds + 180).")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    process, url = start_emulator(args)
    timer = watchdog(args.timeout_s or 2 * args.seconds + 180, process.kill)
    try:
        farm = measure("farm", url, args)
        baseline = measure("baseline", url, args)
    finally:
        timer.cancel()
        process.terminate()
        process.wait(timeout=10)
    offered = args.callers / (args.latency_ms / 1000.0) * 60.0
    report = {
        "benchmark": "quota",
        "figure": "achieved requests/min as a share of the quota, with 429s seen at the emulator and failures returned to callers",
        "params": {**vars(args), "model": MODEL, "offered_rpm_upper_bound": round(offered)},
        "farm": farm,
        "baseline": {"client": "aiobotocore, botocore adaptive retry mode, unbounded concurrency", **baseline},
        "ratio": {
            "share_of_quota_farm_over_baseline": round(farm["share_of_quota"] / baseline["share_of_quota"], 3)
            if baseline["share_of_quota"]
            else None,
            "throttled_share_baseline_minus_farm": round(baseline["throttled_share"] - farm["throttled_share"], 4),
            "failures_to_callers_baseline_minus_farm": baseline["failed_to_callers"] - farm["failed_to_callers"],
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
