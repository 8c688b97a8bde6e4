"""Serve overhead benchmark: what the ensemble graph adds on top of the judges themselves.

Three zero-latency judges (rule judges: final answer, length, regex) score GSM8K rollouts

- in-process (`farm.ensemble.Ensemble`, the baseline),
- through the Serve app as deployed by default (rule judges run in the ingress), by handle and by HTTP,
- through the previous Serve path, in the same run: the same app with every judge in its own
  deployment (`deployment.placement: deployment`), one replica round trip per judge per request,

for requests of 64 rollouts (throughput, several requests in flight; the paths take turns in
`--rounds` slices, so that load from other processes on the machine hits them alike) and of 1
rollout (latency, one at a time). Prints one JSON document; the figure is handle throughput over
in-process throughput.

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


def placed(config: dict[str, Any], placement: str) -> dict[str, Any]:
    """The config with every judge at `placement`."""
    judges = [{**j, "deployment": {"placement": placement}} for j in config["judges"]]
    return {**config, "judges": judges, "serve": {**config["serve"], "app_name": f"{config['serve']['app_name']}-{placement}"}}


def measure_all() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="Throughput time per path, split over --rounds.")
    parser.add_argument("--rounds", type=int, default=3, help="Paths take turns this many times (load from elsewhere hits all alike).")
    parser.add_argument("--in-flight", type=int, default=8, help="Concurrent 64-rollout requests.")
    parser.add_argument("--single", type=int, default=300, help="Sequential single-rollout requests for latency.")
    parser.add_argument("--num-cpus", type=int, default=4)
    parser.add_argument("--no-previous", action="store_true", help="Skip the previous path (every judge in its own deployment).")
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
    ensemble = Ensemble.from_config(parse_config(CONFIG))

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    apps = {"ingress": placed(CONFIG, "ingress")}
    if not args.no_previous:
        apps["previous"] = placed(CONFIG, "deployment")
    for config in apps.values():
        name = config["serve"]["app_name"]
        serve.run(build_app({"config": config}), name=name, route_prefix=f"/{name}")

    async def run() -> tuple[dict[str, float], dict[str, list[float]]]:
        calls: dict[str, Any] = {}

        async def inprocess(batch: list[dict[str, Any]]) -> Any:
            return await ensemble.score([parse_rollout(r) for r in batch])

        calls["in_process"] = inprocess
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            for path, config in apps.items():
                name = config["serve"]["app_name"]
                handle = serve.get_app_handle(name)
                url = f"http://127.0.0.1:{port}/{name}/score"

                async def by_handle(batch: list[dict[str, Any]], handle: Any = handle) -> Any:
                    return await handle.score.remote(batch)

                async def by_http(batch: list[dict[str, Any]], url: str = url) -> Any:
                    async with session.post(url, json={"rollouts": batch}) as response:
                        body = await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
                        return body

                calls[f"{path}_handle"], calls[f"{path}_http"] = by_handle, by_http
            for call in calls.values():
                await call(batches[0])  # warm: connections, handles, first-call imports
            done = dict.fromkeys(calls, 0.0)
            for _ in range(args.rounds):
                for key, call in calls.items():
                    done[key] += await throughput(call, batches, args.in_flight, args.seconds / args.rounds) / args.rounds
            return done, {key: await latencies(call, rows, args.single) for key, call in calls.items()}

    tput, lat = asyncio.run(run())
    deployments = {path: sorted(serve.status().applications[c["serve"]["app_name"]].deployments) for path, c in apps.items()}
    serve.shutdown()
    ray.shutdown()

    base = tput["in_process"]
    base_p50 = statistics.median(lat["in_process"])

    def summary(key: str) -> dict[str, float]:
        return {
            "rollouts_per_s_64": round(tput[key], 1),
            "p50_ms_1": pct(lat[key], 0.5),
            "p99_ms_1": pct(lat[key], 0.99),
            "p50_added_ms_1": round((statistics.median(lat[key]) - base_p50) * 1000, 3),
        }

    report: dict[str, Any] = {
        "benchmark": "serve_overhead",
        "figure": "handle throughput over in-process throughput (rollouts/s, 64-rollout requests); latency added for 1-rollout requests",
        "params": {**vars(args), "judges": [j["name"] for j in CONFIG["judges"]], "rollouts_per_request": 64},
        "baseline_in_process": {
            "rollouts_per_s_64": round(base, 1),
            "p50_ms_1": pct(lat["in_process"], 0.5),
            "p99_ms_1": pct(lat["in_process"], 0.99),
        },
        "handle": summary("ingress_handle"),
        "http": summary("ingress_http"),
        "deployments": deployments["ingress"],
        "ratio": {
            "handle_over_in_process_throughput": round(tput["ingress_handle"] / base, 4),
            "http_over_in_process_throughput": round(tput["ingress_http"] / base, 4),
        },
    }
    if "previous" in apps:
        report["previous_every_judge_a_deployment"] = {
            "handle": summary("previous_handle"),
            "http": summary("previous_http"),
            "deployments": deployments["previous"],
            "handle_over_in_process_throughput": round(tput["previous_handle"] / base, 4),
        }
        report["ratio"]["handle_over_previous_handle_throughput"] = round(tput["ingress_handle"] / tput["previous_handle"], 4)
        report["ratio"]["http_over_previous_http_throughput"] = round(tput["ingress_http"] / tput["previous_http"], 4)
    return report


if __name__ == "__main__":
    main()
