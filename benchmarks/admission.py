"""Admission benchmark: concurrent large requests against a 2,000 rpm quota, through HTTP.

The default ensemble (final answer, rubric on Nova 2 Lite, preference on nova-micro; groups of
4 rollouts per GSM8K question) is served by a Serve app whose replicas call the emulator over
loopback, the emulator enforcing 2,000 rpm per model with ~300 ms latency. `--requests`
requests of `--rollouts` rollouts each are sent at once, twice in one run:

- farm: admission control on (the shipped behaviour): each request is answered 200 with
  complete rewards, or refused at once with 503 + Retry-After;
- baseline: the same app with `serve.admission: false`: every request is accepted.

The figure is how many 200s carry any partial reward (must be 0 with admission on), the 503s
and whether they carry Retry-After, and the rollouts that came back complete. Prints one JSON
document.

    python benchmarks/admission.py --requests 2 --rollouts 256
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, gsm8k_rollouts, print_report  # noqa: E402

MODELS = ("us.amazon.nova-2-lite-v1:0", "amazon.nova-micro-v1:0")


def app_config(name: str, admission: bool, deadline_s: float) -> dict[str, Any]:
    config = yaml.safe_load((REPO / "farm" / "defaults" / "default.yaml").read_text())
    config = copy.deepcopy(config)
    config.pop("emulator", None)
    for judge in config["judges"]:
        if "model" in judge:
            judge["deadline_s"] = deadline_s
    config["cache"] = {"enabled": False}  # every rollout costs its calls
    config["serve"] = {"app_name": name, "admission": admission}
    return config


async def send(url: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import aiohttp

    async def one(session: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        async with session.post(url, json=body) as response:
            payload = await response.json(content_type=None)
            return {
                "status": response.status,
                "retry_after": response.headers.get("Retry-After"),
                "seconds": round(time.monotonic() - started, 2),
                "results": payload.get("results", []) if isinstance(payload, dict) else [],
                "error": payload.get("error") if isinstance(payload, dict) else str(payload)[:200],
            }

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return await asyncio.gather(*(one(session, body) for body in bodies))


def summarise(answers: list[dict[str, Any]], seconds: float, sent: int) -> dict[str, Any]:
    ok_200 = [a for a in answers if a["status"] == 200]
    statuses: Counter[str] = Counter()
    for answer in ok_200:
        statuses.update(r["status"] for r in answer["results"])
    refused = [a for a in answers if a["status"] == 503]
    return {
        "http_statuses": sorted(a["status"] for a in answers),
        "responses_200_with_partial": sum(any(r["status"] != "ok" for r in a["results"]) for a in ok_200),
        "rollouts_in_200s_by_status": dict(statuses),
        "responses_503": len(refused),
        "responses_503_with_retry_after": sum(a["retry_after"] is not None for a in refused),
        "retry_after_s": [int(a["retry_after"]) for a in refused if a["retry_after"] is not None],
        "refusal_seconds": [a["seconds"] for a in refused],
        "completed_rollouts": statuses["ok"],
        "rollouts_sent": sent,
        "response_seconds": [a["seconds"] for a in answers],
        "wall_s": round(seconds, 1),
        "errors": [a["error"] for a in answers if a["status"] != 200][:3],
    }


def main() -> None:
    print_report(measure_all)


def measure_all() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2, help="Concurrent requests.")
    parser.add_argument("--rollouts", type=int, default=256, help="Rollouts per request (groups of 4).")
    parser.add_argument("--rpm", type=int, default=2000, help="Quota per model, configured and enforced by the emulator.")
    parser.add_argument("--latency-ms", type=float, default=300.0)
    parser.add_argument("--deadline-s", type=float, default=60.0, help="Deadline of each Bedrock judge.")
    parser.add_argument("--num-cpus", type=int, default=4)
    args = parser.parse_args()

    import ray
    from ray import serve

    from deploy.app import build_app
    from farm.emulator import EmulatorSettings, EmulatorThread

    rows = gsm8k_rollouts(args.requests * args.rollouts)
    if len(rows) < args.requests * args.rollouts:
        raise SystemExit(f"only {len(rows)} rollouts available")
    for row in rows:
        row["group"] = "q" + row["id"].split("-", 1)[0]  # the 4 solutions of one question form a group
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = EmulatorSettings(rpm=args.rpm, tpm=100_000_000, latency_ms=args.latency_ms)
    report: dict[str, Any] = {
        "benchmark": "admission",
        "figure": f"{args.requests} concurrent {args.rollouts}-rollout HTTP requests at {args.rpm} rpm per model: "
        "200s carrying any partial reward (must be 0), early 503s with Retry-After, completed rollouts",
        "params": vars(args),
    }
    with EmulatorThread(settings) as emulator:
        env = {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"log_level": "WARNING"})
        try:
            for label, admission in (("farm", True), ("baseline_no_admission", False)):
                name = f"admission-bench-{'on' if admission else 'off'}"
                config = app_config(name, admission, args.deadline_s)
                for model in MODELS:
                    config["bedrock"]["quotas"][model] = {"rpm": args.rpm, "tpm": 100_000_000}
                serve.run(build_app({"config": config, "env": env}), name=name, route_prefix=f"/{name}")
                emulator.reset()
                bodies = [{"rollouts": rows[i * args.rollouts : (i + 1) * args.rollouts]} for i in range(args.requests)]
                started = time.monotonic()
                answers = asyncio.run(send(f"http://127.0.0.1:{port}/{name}/score", bodies))
                elapsed = time.monotonic() - started
                result = summarise(answers, elapsed, args.requests * args.rollouts)
                stats = emulator.stats()
                result["model_calls"] = {m: s.admitted for m, s in stats.items()}
                result["throttled_429s"] = {m: s.throttled for m, s in stats.items()}
                report[label] = result
                serve.delete(name)
                time.sleep(3.0)  # the quota's bucket refills before the next app
        finally:
            serve.shutdown()
            ray.shutdown()
    farm, base = report["farm"], report["baseline_no_admission"]
    report["ratio"] = {
        "partial_200s_farm_over_baseline": (
            round(farm["responses_200_with_partial"] / base["responses_200_with_partial"], 4)
            if base["responses_200_with_partial"]
            else None
        ),
        "completed_rollouts_farm_over_baseline": (
            round(farm["completed_rollouts"] / base["completed_rollouts"], 4) if base["completed_rollouts"] else None
        ),
    }
    report["criteria_met"] = farm["responses_200_with_partial"] == 0 and farm["responses_503"] == farm["responses_503_with_retry_after"]
    return report


if __name__ == "__main__":
    main()
