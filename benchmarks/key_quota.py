"""Per-key quotas under load: two named API keys hammer `POST /score` at once; each key's admitted
rate should be its own configured rate, whatever the other does.

Baseline (same run, same app, same concurrency): the shared token, which has no rate of its own,
shows what the app could admit. The figure is each key's achieved / configured rate. Prints one
JSON document.

    python benchmarks/key_quota.py --seconds 15 --rate-a 6 --rate-b 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import gsm8k_rollouts, print_report  # noqa: E402

CONFIG: dict[str, Any] = {
    "judges": [{"name": "answer", "kind": "final_answer"}, {"name": "length", "kind": "length", "min_chars": 1, "max_chars": 4000}],
    "cache": {"enabled": False},
    "serve": {"app_name": "key-quota-bench"},
}


async def hammer(url: str, token: str, rows: list[dict[str, Any]], workers: int, seconds: float) -> dict[str, int]:
    """Status counts for `workers` callers sending one-rollout requests back to back."""
    import aiohttp

    counts: dict[str, int] = {}
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=workers)) as session:

        async def worker(offset: int) -> None:
            i = offset
            while time.monotonic() < stop:
                row = {**rows[i % len(rows)], "id": f"{token[:6]}-{i}"}
                async with session.post(url, json={"rollouts": [row]}, headers=headers) as response:
                    await response.read()
                    counts[str(response.status)] = counts.get(str(response.status), 0) + 1
                i += workers

        await asyncio.gather(*(worker(k) for k in range(workers)))
    return counts


def main() -> None:
    print_report(measure)


def measure() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate-a", type=float, default=6.0, help="trainer-a requests/s")
    parser.add_argument("--rate-b", type=float, default=2.0, help="trainer-b requests/s")
    parser.add_argument("--workers", type=int, default=3, help="concurrent callers per key")
    parser.add_argument("--num-cpus", type=int, default=4)
    args = parser.parse_args()

    import ray
    from ray import serve

    from deploy.app import build_app

    folder = Path(tempfile.mkdtemp(prefix="farm-keys-"))
    tokens = {name: secrets.token_hex(24) for name in ("shared", "trainer-a", "trainer-b")}
    for name, token in tokens.items():
        (folder / name).write_text(token)
        (folder / name).chmod(0o600)
    auth = {
        "token": {"file": str(folder / "shared")},
        "keys": [
            {"name": "trainer-a", "secret": {"file": str(folder / "trainer-a")}, "requests_per_s": args.rate_a},
            {"name": "trainer-b", "secret": {"file": str(folder / "trainer-b")}, "requests_per_s": args.rate_b},
        ],
    }
    rows = gsm8k_rollouts(256)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"config": CONFIG, "auth": auth}), name="key-quota-bench", route_prefix="/")
    url = f"http://127.0.0.1:{port}/score"

    async def run() -> tuple[dict[str, int], float, list[dict[str, int]], float]:
        await hammer(url, tokens["shared"], rows, 1, 1.0)  # warm up
        started = time.monotonic()
        shared = await hammer(url, tokens["shared"], rows, 2 * args.workers, args.seconds)
        shared_s = time.monotonic() - started
        await asyncio.sleep(1.0)
        started = time.monotonic()
        keyed = await asyncio.gather(*(hammer(url, tokens[k], rows, args.workers, args.seconds) for k in ("trainer-a", "trainer-b")))
        return shared, shared_s, list(keyed), time.monotonic() - started

    shared, shared_s, keyed, keyed_s = asyncio.run(run())
    serve.shutdown()
    ray.shutdown()

    keys = {}
    for (name, rate), counts in zip((("trainer-a", args.rate_a), ("trainer-b", args.rate_b)), keyed, strict=True):
        achieved = counts.get("200", 0) / keyed_s
        keys[name] = {
            "configured_per_s": rate,
            "admitted": counts.get("200", 0),
            "limited_429": counts.get("429", 0),
            "other": {k: v for k, v in counts.items() if k not in ("200", "429")},
            "achieved_per_s": round(achieved, 2),
            "achieved_over_configured": round(achieved / rate, 3),
        }
    capacity = shared.get("200", 0) / shared_s
    return {
        "benchmark": "key_quota",
        "figure": "each API key's admitted request rate over its configured rate, both keys under load at once",
        "params": {**vars(args), "judges": [j["name"] for j in CONFIG["judges"]], "rollouts_per_request": 1},
        "baseline_shared_token_unlimited": {"admitted_per_s": round(capacity, 1), "statuses": shared},
        "keys": keys,
        "ratio": {
            "trainer_a_achieved_over_configured": keys["trainer-a"]["achieved_over_configured"],
            "trainer_b_achieved_over_configured": keys["trainer-b"]["achieved_over_configured"],
            "a_over_b_achieved": round(keys["trainer-a"]["achieved_per_s"] / max(keys["trainer-b"]["achieved_per_s"], 1e-9), 2),
            "a_over_b_configured": round(args.rate_a / args.rate_b, 2),
            "both_keys_over_capacity": round((keys["trainer-a"]["achieved_per_s"] + keys["trainer-b"]["achieved_per_s"]) / capacity, 3),
        },
    }


if __name__ == "__main__":
    main()
