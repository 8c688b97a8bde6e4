"""Client disconnects are a designed path: one request leaving never breaks another that shares its work."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.client import HTTPConnection
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.serve.conftest import TOKEN, delete_apps, deploy, http

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.integration]

LITE = "amazon.nova-lite-v1:0"


def test_a_disconnecting_client_does_not_break_the_request_sharing_its_key(ray_serve, reset_emulator, report):
    """A starts the rubric call for a rollout and disconnects; B (same content, another id) joined
    that call in the judge replica's cache and still gets its verdict from the one model call."""

    reset_emulator.update(latency_ms=2500)
    config: dict[str, Any] = {
        "judges": [
            {
                "name": "rubric",
                "kind": "rubric",
                "model": LITE,
                "deadline_s": 30,
                "criteria": [{"name": "correctness", "description": "The final answer is correct."}],
            }
        ],
        "bedrock": {"default_quota": {"rpm": 60000, "tpm": 100000000}},
        "cache": {"enabled": True},
        "serve": {"app_name": "cancel-test"},
    }
    deploy(ray_serve, "cancel-test", {"config": config, "env": ray_serve["env"]}, "/cancel")
    base = ray_serve["url"] + "/cancel"
    row = {"prompt": "What is 17 + 25?", "response": "17 + 25 = 42. The answer is 42.", "reference": "42"}
    url = urlparse(base)

    # A: a real HTTP client that gives up after 1 s and closes its connection
    conn = HTTPConnection(url.hostname, url.port, timeout=1.0)
    body = json.dumps({"rollouts": [{"id": "a", **row}]})
    conn.request("POST", url.path + "/score", body, {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    b_answer: list[tuple[int, dict[str, str], Any]] = []
    time.sleep(0.4)  # A's model call is in flight in the judge replica
    b = threading.Thread(target=lambda: b_answer.append(http(base, "/score", {"rollouts": [{"id": "b", **row}]})))
    b.start()
    with pytest.raises((socket.timeout, TimeoutError)):
        conn.getresponse()
    conn.close()  # A disconnects: Serve cancels its request, down to the judge replica
    b.join(60)
    status, _, payload = b_answer[0]
    received = reset_emulator.stats()[LITE].received
    report(f"disconnect: B answered {status} with rubric {payload['results'][0]['judges']['rubric']['status']}; model calls {received}")
    assert status == 200
    result = payload["results"][0]
    assert result["id"] == "b" and result["status"] == "ok"
    assert result["judges"]["rubric"]["status"] == "ok" and result["judges"]["rubric"]["score"] is not None
    assert received == 1  # B joined A's call, which outlived A
    # the server still answers, and the verdict A started is cached for later requests
    status, _, again = http(base, "/score", {"rollouts": [{"id": "c", **row}]})
    assert status == 200 and again["results"][0]["judges"]["rubric"]["cached"] is True
    delete_apps("cancel-test")
