"""Offline rescoring benchmarks. Each subcommand prints one JSON document.

    python benchmarks/rescore.py cluster --rows 1000000   # rule judges: 3-node cluster writing to S3 vs one node
    python benchmarks/rescore.py batch --rows 20000       # default ensemble on the emulator: on-demand vs --bedrock-batch
    python benchmarks/rescore.py fingerprint --mb 1024    # content fingerprint of a 1 GB input vs reading it

`cluster`: N rows (the GSM8K rollouts replicated with new ids) scored by three rule judges with
`farm rescore`, (a) on one node to a local directory (the baseline), (b) on a three-node local
`ray.cluster_utils.Cluster` whose two worker nodes own the scoring actors, writing parts to an S3
server on loopback (moto), and (c) the same cluster with parts sent back to the driver through
the object store for the driver to write. rows/s of each whole command and the peak RSS of each
driver process, sampled from /proc.

`batch`: the default ensemble (final_answer, rubric on Nova Lite, preference on Nova Micro) on
the emulator, on demand vs through Bedrock batch inference: wall time, Nova calls (on-demand
requests the emulator received, and batch records), cost from the price table, and whether the
rewards are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, gsm8k_rollouts, print_report  # noqa: E402

RULES = """judges:
  - {name: answer, kind: final_answer}
  - {name: length, kind: length, min_chars: 10, max_chars: 4000}
  - {name: format, kind: regex, pattern: "A:\\\\s*-?[\\\\d,.]+\\\\s*$"}
cache: {enabled: false}
"""
LITE, MICRO = "amazon.nova-lite-v1:0", "amazon.nova-micro-v1:0"
PRICES = {LITE: {"input_per_1k": 0.00006, "output_per_1k": 0.00024}, MICRO: {"input_per_1k": 0.000035, "output_per_1k": 0.00014}}
"""Amazon Bedrock on-demand prices for Nova Lite and Micro (us-east-1, USD per 1,000 tokens)."""
BUCKET = "farm-bench"


def write_input(path: Path, rows: int, grouped: bool = False) -> None:
    base = gsm8k_rollouts(10**9)
    with path.open("w") as handle:
        for i in range(rows):
            row = base[i % len(base)]
            copy = i // len(base)
            extra = {}
            if grouped:  # every row its own content (no two judge requests alike), groups kept per copy
                extra = {"group": f"{row['id'].split('-')[0]}-r{copy}", "prompt": f"{row['prompt']} (variant {copy})"}
            handle.write(json.dumps({**row, "id": f"{row['id']}-r{copy}", **extra}) + "\n")


class S3Server:
    """moto's S3 server on a free loopback port, with one bucket."""

    def __enter__(self) -> S3Server:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(self.url + "/moto-api/", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        self.env = {
            "AWS_ENDPOINT_URL_S3": self.url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        import boto3

        boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="b", aws_secret_access_key="b").create_bucket(
            Bucket=BUCKET
        )
        return self

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def run_cli(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB of the process itself, from /proc VmHWM sampled until it exits)."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample() -> None:
        while process.poll() is None:
            try:
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]) / 1024)
            except OSError:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    elapsed = time.monotonic() - started
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"farm rescore failed: {stderr[-3000:]}")
    return elapsed, peak[0]


def cluster_figure(args: argparse.Namespace) -> dict[str, Any]:
    from ray.cluster_utils import Cluster

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp, S3Server() as s3:
        work = Path(tmp)
        source = work / "rollouts.jsonl"
        write_input(source, args.rows)
        config = work / "rules.yaml"
        config.write_text(RULES)
        base = [sys.executable, "-m", "farm.cli", "rescore", str(source), "--config", str(config), "--chunk-rows", str(args.chunk_rows)]
        env = {**os.environ, **s3.env, "PYTHONUNBUFFERED": "1"}
        env.pop("RAY_ADDRESS", None)
        single_s, single_rss = run_cli([*base, "--out", str(work / "single")], env)
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        try:
            for _ in range(2):
                cluster.add_node(num_cpus=1, resources={"rescore": 4})
            cluster.wait_for_nodes()
            on_cluster = [*base, "--workers", "2", "--worker-resource", "rescore"]
            env_cluster = {**env, "RAY_ADDRESS": cluster.address}
            s3_s, s3_rss = run_cli([*on_cluster, "--out", f"s3://{BUCKET}/workers"], env_cluster)
            drv_s, drv_rss = run_cli([*on_cluster, "--out", f"s3://{BUCKET}/driver", "--write-from", "driver"], env_cluster)
        finally:
            cluster.shutdown()
        import boto3

        client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1", aws_access_key_id="b", aws_secret_access_key="b")
        for prefix in ("workers", "driver"):
            summary = json.loads(client.get_object(Bucket=BUCKET, Key=f"{prefix}.summary.json")["Body"].read())
            assert summary["rows"] == args.rows, (prefix, summary["rows"])
        assert json.loads((work / "single.summary.json").read_text())["rows"] == args.rows
    rate = lambda s: round(args.rows / s, 1)  # noqa: E731
    return {
        "benchmark": "rescore-cluster",
        "figure": "rows/s of `farm rescore` (whole command) and driver peak RSS: 3-node local cluster writing parts to S3 from the "
        "worker nodes, vs the same cluster with parts written by the driver, vs one node writing to local disk",
        "params": {**vars(args), "judges": ["final_answer", "length", "regex"], "cpus": os.cpu_count(), "s3": "moto server on loopback"},
        "three_nodes_actors_write_s3": {"rows_per_s": rate(s3_s), "elapsed_s": round(s3_s, 1), "driver_peak_rss_mb": round(s3_rss, 1)},
        "three_nodes_driver_writes_s3": {"rows_per_s": rate(drv_s), "elapsed_s": round(drv_s, 1), "driver_peak_rss_mb": round(drv_rss, 1)},
        "baseline_single_node_local_disk": {
            "rows_per_s": rate(single_s),
            "elapsed_s": round(single_s, 1),
            "driver_peak_rss_mb": round(single_rss, 1),
        },
        "ratio": {
            "three_nodes_over_single_rows_per_s": round(single_s / s3_s, 3),
            "driver_writes_over_actors_write_rows_per_s": round(s3_s / drv_s, 3),
            "driver_writes_over_actors_write_driver_rss": round(drv_rss / s3_rss, 3),
        },
    }


def batch_figure(args: argparse.Namespace) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    import yaml

    from actors.rescore import rescore
    from farm.config import parse_config
    from farm.emulator import EmulatorSettings, EmulatorThread
    from farm.offline.bedrock_batch import BatchSettings

    data = yaml.safe_load((REPO / "farm" / "defaults" / "default.yaml").read_text())
    data["bedrock"]["quotas"] = {m: {"rpm": 600_000, "tpm": 1_000_000_000} for m in (LITE, MICRO)}
    data["prices"] = PRICES
    data["cache"] = {"enabled": False}
    config = parse_config(data)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp, S3Server() as s3:
        source = Path(tmp) / "rollouts.jsonl"
        write_input(source, args.rows, grouped=True)
        os.environ.update(s3.env)
        settings = EmulatorSettings(latency_ms=args.latency_ms, latency_sigma=0, rpm=600_000, tpm=1_000_000_000)
        with EmulatorThread(settings) as emulator:
            os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = os.environ["AWS_ENDPOINT_URL_BEDROCK"] = emulator.url
            env = {**s3.env, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator.url}
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            try:
                started = time.monotonic()
                od = rescore([str(source)], f"s3://{BUCKET}/on-demand", config, env=env, chunk_rows=args.chunk_rows)
                od_s = time.monotonic() - started
                od_calls = {m: s.received for m, s in emulator.stats().items()}
                emulator.reset()
                batch_settings = BatchSettings(s3_prefix=f"s3://{BUCKET}/jobs", role_arn="arn:aws:iam::000000000000:role/bench", poll_s=1.0)
                started = time.monotonic()
                out = f"s3://{BUCKET}/batch"
                bt = rescore([str(source)], out, config, env=env, chunk_rows=args.chunk_rows, bedrock_batch=batch_settings)
                bt_s = time.monotonic() - started
                bt_calls = {m: s.received for m, s in emulator.stats().items()}
                records = {m: dict(c) for m, c in emulator.server.batch.stats.items()}
            finally:
                ray.shutdown()
        import boto3

        client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1", aws_access_key_id="b", aws_secret_access_key="b")

        def rewards(prefix: str) -> dict[str, float | None]:
            out: dict[str, float | None] = {}
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/part-")
            for key in (o["Key"] for page in pages for o in page.get("Contents", [])):
                table = pq.read_table(pa.BufferReader(client.get_object(Bucket=BUCKET, Key=key)["Body"].read()), columns=["id", "reward"])
                out.update(zip(table.column("id").to_pylist(), table.column("reward").to_pylist(), strict=True))
            return out

        a, b = rewards("on-demand"), rewards("batch")
        differing = sum(1 for k in a if b.get(k) is None or a[k] is None or abs(a[k] - b[k]) > 1e-9) if a.keys() == b.keys() else None
    info = bt.report["bedrock_batch"]
    return {
        "benchmark": "rescore-bedrock-batch",
        "figure": "default ensemble on the emulator: --bedrock-batch against on-demand, wall time, Nova calls, cost from the price table",
        "params": {**vars(args), "prices_usd_per_1k_tokens": PRICES, "batch_discount": 0.5, "cpus": os.cpu_count()},
        "bedrock_batch": {
            "elapsed_s": round(bt_s, 1),
            "on_demand_calls": bt_calls,
            "batch_records": records,
            "jobs": [{k: j[k] for k in ("model", "records", "status")} for j in info["jobs"]],
            "notes": info["notes"],
            "cost_usd_billed": bt.report["total_cost_usd"],
            "batch_cost": info["cost"],
            "replay": info["replay"],
        },
        "baseline_on_demand": {"elapsed_s": round(od_s, 1), "on_demand_calls": od_calls, "cost_usd_billed": od.report["total_cost_usd"]},
        "identical_rewards": {"rows": len(a), "differing": differing},
        "ratio": {
            "batch_over_on_demand_cost": round(bt.report["total_cost_usd"] / od.report["total_cost_usd"], 3),
            "batch_over_on_demand_wall_time": round(bt_s / od_s, 3),
        },
    }


def fingerprint_figure(args: argparse.Namespace) -> dict[str, Any]:
    from farm.offline.reader import describe_inputs, fingerprint

    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = Path(tmp) / "big.jsonl"
        block = "".join(json.dumps(r) + "\n" for r in gsm8k_rollouts(2000)).encode()
        with path.open("wb") as handle:
            while handle.tell() < args.mb * 2**20:
                handle.write(block)
        size = path.stat().st_size
        files = describe_inputs([str(path)])
        started = time.monotonic()
        with path.open("rb") as handle:
            while handle.read(8 << 20):
                pass
        read_s = time.monotonic() - started
        started = time.monotonic()
        digest = fingerprint(files)
        hash_s = time.monotonic() - started
    return {
        "benchmark": "rescore-fingerprint",
        "figure": "seconds to fingerprint an input by content (streaming SHA-256), vs reading the same bytes without hashing",
        "params": {**vars(args), "bytes": size, "page_cache": "warm (file just written)"},
        "fingerprint": {"seconds": round(hash_s, 3), "gb_per_s": round(size / hash_s / 1e9, 3), "digest": digest},
        "baseline_plain_read": {"seconds": round(read_s, 3), "gb_per_s": round(size / read_s / 1e9, 3)},
        "ratio": {"fingerprint_over_plain_read": round(hash_s / read_s, 3)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tmp", default=None, help="Directory for inputs and local outputs.")
    sub = parser.add_subparsers(dest="which", required=True)
    cluster = sub.add_parser("cluster")
    cluster.add_argument("--rows", type=int, default=1_000_000)
    cluster.add_argument("--chunk-rows", type=int, default=5000)
    batch = sub.add_parser("batch")
    batch.add_argument("--rows", type=int, default=20_000)
    batch.add_argument("--chunk-rows", type=int, default=1000)
    batch.add_argument("--latency-ms", type=float, default=150.0, help="Emulator latency per on-demand call (the default config's).")
    fp = sub.add_parser("fingerprint")
    fp.add_argument("--mb", type=int, default=1024)
    args = parser.parse_args()
    figure = {"cluster": cluster_figure, "batch": batch_figure, "fingerprint": fingerprint_figure}[args.which]
    print_report(lambda: figure(args))


if __name__ == "__main__":
    main()
