"""`farm serve --token-file` as an operator starts it, on the embedded default (the emulator): the
token read from a file by the ingress, 401 without it, 200 with it and every judge `ok`, `/healthz`
alive-only, and the token nowhere in what the command prints.

One `farm serve` for all of it (each costs Ray + Serve + three judges' start); the same command
without a token, answering a plain curl, is what tests/docs/test_readme.py runs from the README."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.farm_process import stop_process_group
from tests.serve.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.ray, pytest.mark.slow]


def _get(url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_farm_serve_with_a_token_file(tmp_path: Path):
    token = secrets.token_hex(24)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FARM_", "RAY_ADDRESS"))}
    env.update({"FARM_BACKEND": "emulator", "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1"})
    command = [sys.executable, "-m", "farm.cli", "serve", "--port", str(port), "--num-cpus", "2", "--token-file", str(token_file)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()  # drains stderr the whole time, so the pipe never fills
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and not any("is serving at" in line for line in lines):
            time.sleep(0.5)
        found = re.search(r"is serving at (http://\S+)", "".join(lines))
        assert found, "".join(lines)[-3000:]
        url = found.group(1)
        assert _get(url + "/healthz") == (200, {"status": "ok"})
        with open(REPO / "examples/gsm8k_rollouts.jsonl") as handle:
            rollout = json.loads(handle.readline())
        status, body = _get(url + "/score", None, {"rollouts": [rollout]})
        assert status == 401 and body == {"error": "missing or wrong bearer token"}
        assert _get(url + "/score", token[:-1], {"rollouts": [rollout]})[0] == 401
        status, body = _get(url + "/score", token, {"rollouts": [rollout]})
        assert status == 200, body
        (result,) = body["results"]
        assert result["id"] == rollout["id"] and result["status"] == "ok", result
        assert set(result["judges"]) == {"final_answer", "rubric", "preference"}
        assert result["judges"]["rubric"]["status"] == "ok" and result["judges"]["rubric"]["input_tokens"] > 0
        status, info = _get(url + "/info", token)
        assert status == 200 and set(info["judges"]) == {"final_answer", "rubric", "preference"}
    finally:
        stop_process_group(proc)
    reader.join(timeout=30)
    printed = "".join(lines)
    assert "Bedrock EMULATOR" in printed  # the embedded default says which backend it judges with
    assert "Authorization: Bearer $FARM_API_TOKEN" in printed  # the curl hint names a variable, not the token
    assert token not in printed
