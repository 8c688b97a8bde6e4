"""The cluster's quota actor survives SIGKILL: it keeps the newest deployment's quota, starts
empty instead of with a fresh burst, and its callers see neither a Ray error nor a lost rollout."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from tests.conftest import max_in_window
from tests.serve.conftest import delete_apps, deploy

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.integration]

PREMIER = "amazon.nova-premier-v1:0"
REGION = "us-east-1"


def _actor() -> Any:
    import ray

    from actors.quota import NAMESPACE, quota_actor_name

    return ray.get_actor(quota_actor_name(PREMIER, REGION), namespace=NAMESPACE)


def _kill_and_wait(timeout_s: float = 60.0) -> dict[str, Any]:
    """SIGKILL the quota actor's process (as the OOM killer or a crash would) and wait for Ray to restart it."""
    import ray

    before = ray.get(_actor().snapshot.remote(), timeout=timeout_s)
    os.kill(int(before["pid"]), signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            after = ray.get(_actor().snapshot.remote(), timeout=5)
        except Exception:  # noqa: BLE001 - restarting
            time.sleep(0.2)
            continue
        if after["pid"] != before["pid"]:
            return after
        time.sleep(0.1)
    raise AssertionError("the quota actor did not come back")


def _config(rpm: int, replicas: int) -> dict[str, Any]:
    return {
        "judges": [
            {
                "name": "rubric",
                "kind": "rubric",
                "model": PREMIER,
                "deadline_s": 120,
                "criteria": [{"name": "correctness", "description": "The final answer is correct."}],
                "deployment": {"num_replicas": replicas, "num_cpus": 0},
            }
        ],
        "bedrock": {"quotas": {PREMIER: {"rpm": rpm, "tpm": 100_000_000, "burst_s": 0.2}}},
        "cache": {"enabled": False},
        "serve": {"app_name": "qkill-test"},
    }


def _rows(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i}", "prompt": "What is 6*7?", "response": f"6*7 = 42. A: 42 ({prefix}{i})", "reference": "42"}
        for i in range(count)
    ]


def test_sigkilled_quota_actor_keeps_the_lowered_quota_and_loses_nothing(ray_serve, reset_emulator, report):
    """Deployed at 1,200 rpm, redeployed at 300 rpm, then the quota actor is SIGKILLed three
    times while four replicas drain 100 calls: a restart used to come back at 1,200 rpm with
    a fresh burst, and calls in flight failed as 'unavailable'."""
    from ray import serve

    reset_emulator.update(latency_ms=30)
    deploy(ray_serve, "qkill-test", {"config": _config(1200, 1), "env": ray_serve["env"]}, "/qkill")
    handle = serve.get_app_handle("qkill-test")
    assert all(r.status == "ok" for r in handle.score.remote(_rows("warm", 4)).result())  # the actor exists, at 1,200 rpm
    deploy(ray_serve, "qkill-test", {"config": _config(300, 4), "env": ray_serve["env"]}, "/qkill")  # the redeploy lowers it
    handle = serve.get_app_handle("qkill-test")
    reset_emulator.reset()

    rows = _rows("load", 100)  # 20 s of work at 5 calls/s; at 1,200 rpm all of it would fit in one 10 s window
    started = time.monotonic()
    responses = [handle.score.remote(rows[i : i + 5]) for i in range(0, len(rows), 5)]
    restarts = []
    for at in (4.0, 8.0, 12.0):
        time.sleep(max(0.0, started + at - time.monotonic()))
        restarts.append(_kill_and_wait())
    results = [r for response in responses for r in response.result(timeout_s=180)]
    elapsed = time.monotonic() - started
    admitted = reset_emulator.stats()[PREMIER].admitted_at
    peak = max_in_window(admitted, 10.0)
    statuses = {s: sum(r.status == s for r in results) for s in ("ok", "partial", "failed")}
    report(
        f"quota actor SIGKILLed 3x under load (4 replicas, quota 1200 -> 300 rpm): {statuses}, "
        f"peak {peak} calls in 10 s (quota {50}, limit {52.5}), {len(admitted)} calls in {elapsed:.1f}s"
    )
    assert sorted(r.id for r in results) == sorted(r["id"] for r in rows)
    assert statuses["ok"] == len(rows), [r.judges["rubric"].error for r in results if r.status != "ok"][:3]
    assert [r["rpm"] for r in restarts] == [300, 300, 300]  # the restarted actor kept the newer deployment's quota
    assert [r["incarnation"] for r in restarts] == [restarts[0]["incarnation"] + i for i in range(3)]
    assert peak <= 1.05 * 50, peak
    delete_apps("qkill-test")
