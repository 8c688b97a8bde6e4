"""`farm serve` on the embedded default, then a plain HTTP call, as a new user would do it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import REPO
from tests.farm_process import stop_process_group, wait_until_serving
from tests.serve.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.ray, pytest.mark.slow]


def test_farm_serve_embedded_default_answers_curl():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FARM_", "RAY_ADDRESS"))}
    env.update({"FARM_BACKEND": "emulator", "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "farm.cli", "serve", "--port", str(port), "--num-cpus", "2"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        url = wait_until_serving(proc, lines, timeout_s=180)
        assert any("Bedrock EMULATOR" in line for line in lines)
        with open(REPO / "examples/gsm8k_rollouts.jsonl") as handle:
            rollout = json.loads(handle.readline())
        request = urllib.request.Request(
            url + "/score", data=json.dumps({"rollouts": [rollout]}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            body = json.loads(response.read())
        (result,) = body["results"]
        assert result["id"] == rollout["id"] and result["status"] == "ok"
        assert set(result["judges"]) == {"final_answer", "rubric", "preference"}
        assert result["judges"]["rubric"]["status"] == "ok" and result["judges"]["rubric"]["input_tokens"] > 0
    finally:
        stop_process_group(proc)
