"""`farm rescore` killed with SIGKILL midway, then resumed: every input id exactly once.

The driver joins a cluster this test starts (`ray.cluster_utils.Cluster`), so killing it leaves
no Ray processes behind and the test never needs `ray stop` (which would stop every Ray on the
machine)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, gsm8k_rollouts

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RULES = "judges:\n  - {name: answer, kind: final_answer}\n  - {name: length, kind: length, min_chars: 5}\n"


def test_sigkill_midway_then_resume_yields_each_id_once(tmp_path: Path, report):
    import pyarrow.parquet as pq
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        _run(tmp_path, report, pq, cluster.address)
    finally:
        cluster.shutdown()


def _run(tmp_path: Path, report, pq, address: str) -> None:  # noqa: ANN001
    base = gsm8k_rollouts()
    source = tmp_path / "big.jsonl"
    with source.open("w") as handle:
        for copy in range(1):  # 5,276 rows in 22 chunks of 250: the kill after 5 lands midway, as with 8 copies in 43
            for row in base:
                handle.write(json.dumps({**row, "id": f"{row['id']}-c{copy}"}) + "\n")
    config = tmp_path / "rules.yaml"
    config.write_text(RULES)
    out = tmp_path / "out"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["RAY_ADDRESS"] = address
    command = [sys.executable, "-m", "farm.cli", "rescore", str(source), "--out", str(out), "--config", str(config), "--chunk-rows", "250"]
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(out.glob("part-*.parquet"))) < 5:
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    committed = len(list(out.glob("part-*.parquet")))
    chunks = -(-len(base) // 250)
    assert 5 <= committed < chunks, (committed, chunks)  # killed midway
    assert not (tmp_path / "out.summary.json").exists()

    second = subprocess.run([*command, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    ids = [i for part in sorted(out.glob("part-*.parquet")) for i in pq.read_table(part, columns=["id"]).column("id").to_pylist()]
    report(f"rescore killed (SIGKILL) after {committed} of {chunks} chunks, resumed: {len(ids)} results, {len(set(ids))} distinct ids")
    assert len(ids) == len(base) and len(set(ids)) == len(ids)
    assert not list(out.glob("**/*.tmp"))
    summary = json.loads((tmp_path / "out.summary.json").read_text())
    assert summary["rows"] == len(ids)
