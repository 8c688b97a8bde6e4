"""Serve overhead benchmark: what the ensemble graph adds on top of the judges themselves.

Three zero-latency judges (rule judges: final answer, length, regex) score GSM8K rollouts

- in-process (`farm.ensemble.Ensemble`, the baseline), and
- through the Serve app, by handle and by HTTP,

for requests of 64 rollouts (throughput, several requests in flight) and of 1 rollout
(latency, one at a time). Prints one JSON document.

    python benchmarks/serve_overhead.py --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import closed_loop, gsm8k_rollouts, print_report  # noqa: E402

CONFIG: dict[str, Any] = {
    "judges": [
        {"name": "answer", "kind": "final_answer"},
        {"name": "length", "kind": "length", "min_chars": 10, "max_chars": 4000},
        {"name": "format", "kind": "regex", "pattern": r"A:\s*-?[\d,.]+\s*$"},
    ],
    "cache": {"enabled": False},
    "serve": {"app_name": "overhead-bench", "max_rollouts_per_request": 4096},
}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)


async def throughput(call: Any, batches: list[list[dict[str, Any]]], in_flight: int, seconds: float) -> float:
    """Rollouts/s with `in_flight` requests kept open for `seconds`."""
    return await closed_loop(call, batches, in_flight, seconds, size=len)


async def latencies(call: Any, rows: list[dict[str, Any]], n: int) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        await call([rows[i % len(rows)]])
        out.append(time.perf_counter() - started)
    return out


def main() -> None:
    print_report(measure_all)


def measure_all() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="Duration of each throughput run.")
    parser.add_argument("--in-flight", type=int, default=8, help="Concurrent 64-rollout requests.")
    parser.add_argument("--single", type=int, default=300, help="Sequential single-rollout requests for latency.")
    parser.add_argument("--num-cpus", type=int, default=4)
    args = parser.parse_args()

    import aiohttp
    import ray
    from ray import serve

    from deploy.app import build_app
    from farm.config import parse_config
    from farm.ensemble import Ensemble
    from farm.wire import parse_rollout

    rows = gsm8k_rollouts(64 * 32)
    batches = [rows[i : i + 64] for i in range(0, len(rows), 64)]
    config = parse_config(CONFIG)

    ensemble = Ensemble.from_config(config)

    async def inprocess(batch: list[dict[str, Any]]) -> Any:
        return await ensemble.score([parse_rollout(r) for r in batch])

    base_tput = asyncio.run(throughput(inprocess, batches, args.in_flight, args.seconds))
    base_lat = asyncio.run(latencies(inprocess, rows, args.single))

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"config": CONFIG}), name="overhead-bench", route_prefix="/")
    handle = serve.get_app_handle("overhead-bench")
    url = f"http://127.0.0.1:{port}/score"

    async def by_handle(batch: list[dict[str, Any]]) -> Any:
        return await handle.score.remote(batch)

    async def run_http() -> tuple[float, list[float]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

            async def by_http(batch: list[dict[str, Any]]) -> Any:
                async with session.post(url, json={"rollouts": batch}) as response:
                    body = await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
                    return body

            await by_http(batches[0])
            return await throughput(by_http, batches, args.in_flight, args.seconds), await latencies(by_http, rows, args.single)

    async def run_handle() -> tuple[float, list[float]]:
        await by_handle(batches[0])
        return await throughput(by_handle, batches, args.in_flight, args.seconds), await latencies(by_handle, rows, args.single)

    handle_tput, handle_lat = asyncio.run(run_handle())
    http_tput, http_lat = asyncio.run(run_http())
    serve.shutdown()
    ray.shutdown()

    base_p50 = statistics.median(base_lat)
    report = {
        "benchmark": "serve_overhead",
        "figure": "rollouts/s for 64-rollout requests and latency added by the Serve graph for 1-rollout requests",
        "params": {**vars(args), "judges": [j["name"] for j in CONFIG["judges"]], "rollouts_per_request": 64},
        "baseline_in_process": {
            "rollouts_per_s_64": round(base_tput, 1),
            "p50_ms_1": pct(base_lat, 0.5),
            "p99_ms_1": pct(base_lat, 0.99),
        },
        "handle": {
            "rollouts_per_s_64": round(handle_tput, 1),
            "p50_ms_1": pct(handle_lat, 0.5),
            "p99_ms_1": pct(handle_lat, 0.99),
            "p50_added_ms_1": round((statistics.median(handle_lat) - base_p50) * 1000, 3),
        },
        "http": {
            "rollouts_per_s_64": round(http_tput, 1),
            "p50_ms_1": pct(http_lat, 0.5),
            "p99_ms_1": pct(http_lat, 0.99),
            "p50_added_ms_1": round((statistics.median(http_lat) - base_p50) * 1000, 3),
        },
        "ratio": {
            "handle_over_in_process_throughput": round(handle_tput / base_tput, 4),
            "http_over_in_process_throughput": round(http_tput / base_tput, 4),
        },
    }
    return report


if __name__ == "__main__":
    main()
