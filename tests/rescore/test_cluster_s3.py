"""Offline rescoring on a three-node cluster writing to an S3 server on loopback: scoring actors
live on worker nodes (a custom resource), a worker node is killed mid-run and then the driver
(SIGKILL); the resumed run leaves every id exactly once and retries the rows whose judge failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from farm.emulator import EmulatorSettings, EmulatorThread
from tests.conftest import REPO, gsm8k_rollouts

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.integration]

CONFIG = """judges:
  - {name: answer, kind: final_answer}
  - name: rubric
    kind: rubric
    model: amazon.nova-lite-v1:0
    criteria: [{name: correctness, description: The final answer is correct.}]
bedrock:
  max_concurrency: 8
  retry: {max_attempts: 1}
  default_quota: {rpm: 600000, tpm: 1000000000}
cache: {enabled: false}
"""


def wait_for(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def part_ids(s3, prefix: str) -> list[str]:  # noqa: ANN001
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids: list[str] = []
    for key in s3.keys(prefix + "/part-"):
        ids += pq.read_table(pa.BufferReader(s3.get(key)), columns=["id"]).column("id").to_pylist()
    return ids


def test_worker_node_and_driver_killed_then_resumed_exactly_once(tmp_path: Path, s3_server, report) -> None:
    from ray.cluster_utils import Cluster

    rows = gsm8k_rollouts(limit=700)  # 2,800 rows, 14 chunks
    source = tmp_path / "rollouts.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / "farm.yaml"
    config.write_text(CONFIG)
    out = f"s3://{s3_server.bucket}/cluster-run"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=2, resources={"rescore": 4}) for _ in range(2)]
    cluster.wait_for_nodes()
    settings = EmulatorSettings(latency_ms=60, latency_sigma=0, rpm=600_000, tpm=1_000_000_000, faults={"model_error": 0.1})
    try:
        with EmulatorThread(settings) as emulator:
            env = {**os.environ, **s3_server.env(), "RAY_ADDRESS": cluster.address}
            env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = emulator.url
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
            command = [sys.executable, "-m", "farm.cli", "rescore", str(source), "--out", out, "--config", str(config)]
            command += ["--chunk-rows", "200", "--workers", "2", "--worker-resource", "rescore"]
            driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            parts = lambda: len(s3_server.keys("cluster-run/part-"))  # noqa: E731
            wait_for(lambda: parts() >= 2 or driver.poll() is not None, 240, "the first parts")
            assert driver.poll() is None, driver.stderr.read().decode()[-3000:] if driver.stderr else ""
            cluster.remove_node(workers[0], allow_graceful=False)  # a worker node dies mid-run
            at_node_loss = parts()
            wait_for(lambda: parts() >= at_node_loss + 3 or driver.poll() is not None, 240, "progress after the node loss")
            assert driver.poll() is None, "the run should still be going when the driver is killed"
            os.killpg(driver.pid, signal.SIGKILL)  # then the driver dies
            driver.wait(timeout=30)
            committed = parts()
            assert 3 <= committed < 14, committed
            assert not s3_server.keys("cluster-run.summary.json")
            failed_before = len(_rows_with_failed_judge(s3_server, "cluster-run"))
            assert failed_before > 0  # model_error at 10% with no retries left judge failures behind

            cluster.add_node(num_cpus=2, resources={"rescore": 4})  # the replacement node
            emulator.update(faults={"model_error": 0.0})
            resumed = subprocess.run([*command, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
            assert resumed.returncode == 0, "\n".join(line for line in resumed.stderr.splitlines() if "task_manager.cc" not in line)[-5000:]
    finally:
        cluster.shutdown()
    ids = part_ids(s3_server, "cluster-run")
    summary = json.loads(s3_server.get("cluster-run.summary.json"))
    report(
        f"3-node rescore to S3, worker node then driver killed after {at_node_loss} and {committed} of 14 chunks: "
        f"{len(ids)} results, {len(set(ids))} distinct ids of {len(rows)}; {summary['retry']['retried_rows']} failed rows retried, "
        f"{summary['retry']['rows_with_failed_judges']} still failed {summary['retry']['still_failed']}; attempts {summary['attempts']}"
    )
    assert len(ids) == len(rows) and set(ids) == {r["id"] for r in rows}  # 0 lost, 0 duplicated
    assert summary["rows"] == len(rows) and summary["parts"] == 14
    assert summary["retry"]["retried_rows"] >= failed_before and summary["retry"]["rows_with_failed_judges"] == 0
    assert summary["attempts"].get("2", 0) >= failed_before and summary["judges"]["rubric"]["status"] == {"ok": len(rows)}
    assert "retried" in resumed.stderr


def _rows_with_failed_judge(s3, prefix: str) -> list[str]:  # noqa: ANN001
    import pyarrow as pa
    import pyarrow.parquet as pq

    failed = []
    for key in s3.keys(prefix + "/part-"):
        table = pq.read_table(pa.BufferReader(s3.get(key)), columns=["id", "flags"])
        failed += [i for i, f in zip(table.column("id").to_pylist(), table.column("flags").to_pylist(), strict=True) if "judge_failed" in f]
    return failed
