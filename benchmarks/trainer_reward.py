"""Reward time per GRPO step as a trainer sees it: 8 prompts x 8 completions through the TRL
adapter (`FarmReward`), over HTTP, through the Serve handle, and in-process (the baseline).

The default ensemble (final_answer, a Nova rubric, a Nova preference judge comparing each group
of 8 pairwise in both orders) judges with the Bedrock emulator at `--latency-ms`; the cache is
off so every step is judged afresh. Ray has 4 logical CPUs on this 2-core machine. Prints one
JSON document.

    python benchmarks/trainer_reward.py --steps 5
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import gsm8k_rollouts, print_report  # noqa: E402

PROMPTS, COMPLETIONS = 8, 8


def main() -> None:
    print_report(measure_all)


def _config() -> dict[str, Any]:
    import yaml

    from farm.config import load_raw_config

    raw, _ = load_raw_config(None)  # the packaged default ensemble
    config = yaml.safe_load(yaml.safe_dump(raw))
    config["cache"] = {"enabled": False}
    config["serve"] = {"app_name": "trainer-reward-bench", "max_rollouts_per_request": 4096}
    config["bedrock"]["quotas"] = {m: {"rpm": 1_000_000, "tpm": 1_000_000_000} for m in config["bedrock"]["quotas"]}
    return config


def _steps(n: int) -> list[dict[str, list[str]]]:
    """`n` GRPO steps of 8 prompts x 8 completions from the GSM8K rollouts (4 solutions per
    question, each also with a worked-check sentence added, so every group has 8 distinct texts)."""
    rows = gsm8k_rollouts(4 * PROMPTS * n)
    steps = []
    for s in range(n):
        prompts: list[str] = []
        completions: list[str] = []
        answers: list[str] = []
        for q in range(PROMPTS):
            group = rows[(s * PROMPTS + q) * 4 : (s * PROMPTS + q + 1) * 4]
            texts = [r["response"] for r in group] + [r["response"] + "\nI checked each step once more." for r in group]
            prompts += [group[0]["prompt"]] * COMPLETIONS
            completions += texts[:COMPLETIONS]
            answers += [group[0]["reference"]] * COMPLETIONS
        steps.append({"prompts": prompts, "completions": completions, "answer": answers})
    return steps


def _time(reward: Any, steps: list[dict[str, list[str]]]) -> list[float]:
    reward(**steps[0])  # warm-up: clients, connections, replicas
    out = []
    for step in steps[1:]:
        started = time.perf_counter()
        rewards = reward(**step)
        out.append(time.perf_counter() - started)
        if sum(r is None for r in rewards) > 0:
            raise RuntimeError(f"{sum(r is None for r in rewards)} rollouts unscored; the comparison needs every path healthy")
    return out


def measure_all() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="Timed steps per path (plus one warm-up).")
    parser.add_argument("--latency-ms", type=float, default=150.0, help="Emulated Bedrock latency.")
    parser.add_argument("--num-cpus", type=int, default=4)
    args = parser.parse_args()

    import ray
    from ray import serve

    from deploy.app import FarmAppArgs, build_app
    from farm.adapters.trl import FarmReward
    from farm.emulator import EmulatorSettings, EmulatorThread

    config = _config()
    steps = _steps(args.steps + 1)
    emulator = EmulatorThread(EmulatorSettings(latency_ms=args.latency_ms, latency_sigma=0.1, rpm=1_000_000, tpm=1_000_000_000))
    url = emulator.start()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url,
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    try:
        local = FarmReward(config=config, reference_column="answer")
        in_process = _time(local, steps)
        local._client.close()

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        env = {k: os.environ[k] for k in ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        serve.run(build_app(FarmAppArgs(config=config, env=env)), name=config["serve"]["app_name"], route_prefix="/")
        http = _time(FarmReward(url=f"http://127.0.0.1:{port}", reference_column="answer"), steps)
        handle = _time(FarmReward(app_name=config["serve"]["app_name"], reference_column="answer"), steps)
        serve.shutdown()
        ray.shutdown()
    finally:
        emulator.stop()

    def summary(times: list[float]) -> dict[str, float]:
        return {"median_s": round(statistics.median(times), 3), "mean_s": round(statistics.fmean(times), 3), "max_s": round(max(times), 3)}

    base = statistics.median(in_process)
    return {
        "benchmark": "trainer_reward",
        "figure": "seconds of reward time per GRPO step of 8 prompts x 8 completions (64 rollouts), through the TRL adapter",
        "params": {**vars(args), "judges": [j["name"] for j in config["judges"]], "rollouts_per_step": PROMPTS * COMPLETIONS},
        "baseline_in_process": summary(in_process),
        "http": summary(http),
        "handle": summary(handle),
        "ratio_http_vs_in_process": round(statistics.median(http) / base, 3),
        "ratio_handle_vs_in_process": round(statistics.median(handle) / base, 3),
    }


if __name__ == "__main__":
    main()
