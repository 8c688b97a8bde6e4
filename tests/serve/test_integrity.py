"""Canaries and scheduled probes inside the running Serve app: a judge switched to a biased
profile at runtime raises the drift alarm (metric, log, /info, /integrity)."""

from __future__ import annotations

import glob
import os
import time
import urllib.request
from typing import Any

import pytest

from tests.conftest import gsm8k_rollouts
from tests.serve.conftest import delete_apps, deploy, http

pytestmark = [pytest.mark.ray, pytest.mark.slow]

APP = "farm-integrity"
PRO = "amazon.nova-pro-v1:0"
CONFIG: dict[str, Any] = {
    "judges": [
        {"name": "answer", "kind": "final_answer"},
        {"name": "rubric", "kind": "rubric", "model": PRO, "criteria": [{"name": "correctness", "description": "The answer is correct."}]},
    ],
    "bedrock": {"default_quota": {"rpm": 60000, "tpm": 100000000}, "retry": {"max_attempts": 2, "base_delay_s": 0.01}},
    "serve": {"app_name": APP, "route_prefix": "/integrity-app"},
    "integrity": {
        "canaries": {"rate": 0.5, "count": 12, "window": 12, "min_samples": 8, "threshold": 0.15},
        "probes": {"interval_s": 2, "first_delay_s": 0, "limit": 4, "probes": ["injection_suffix", "flattery"]},
    },
}


@pytest.fixture(scope="module")
def app(ray_serve):

    deploy(ray_serve, APP, {"config": CONFIG, "env": ray_serve["env"]}, "/integrity-app")
    yield {**ray_serve, "base": ray_serve["url"] + "/integrity-app"}
    delete_apps(APP)


def _traffic(base: str, rounds: int, tag: str) -> None:
    rows = gsm8k_rollouts(limit=4)
    for round_ in range(rounds):
        batch = [{**row, "id": f"{tag}-{round_}-{row['id']}", "response": row["response"] + f"\n(run {tag} {round_})"} for row in rows]
        status, _, body = http(base, "/score", {"rollouts": batch})
        assert status == 200
        assert [r["id"] for r in body["results"]] == [row["id"] for row in batch], "canaries must never reach the caller"


def _scrape(name: str, judge: str) -> float | None:
    import ray

    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith(name + "{") and f'judge="{judge}"' in line and f'app="{APP}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def _wait_for(check, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    return value


def test_canary_drift_alarm_fires_when_a_judge_turns_lenient(app, reset_emulator, report):
    base = app["base"]
    _traffic(base, rounds=6, tag="calm")  # 96 live rollouts -> 48 canaries: baselines pinned, no drift
    status, _, calm = http(base, "/integrity")
    assert status == 200
    canaries = calm["canaries"]
    assert canaries["observed"] >= 40 and canaries["alarms"] == []
    assert abs(canaries["judges"]["rubric"]["drift"]) < 0.05 and canaries["judges"]["answer"]["drift"] == 0.0

    reset_emulator.update(models={PRO: {"judge": {"leniency": 0.5}}})  # the rubric judge's model drifts at runtime
    _traffic(base, rounds=4, tag="drifted")
    status, _, drifted = http(base, "/integrity")
    judges = drifted["canaries"]["judges"]
    report(
        f"canaries: rubric drift {calm['canaries']['judges']['rubric']['drift']:+.3f} before, "
        f"{judges['rubric']['drift']:+.3f} after leniency +0.5 (threshold 0.15); answer judge {judges['answer']['drift']:+.3f}"
    )
    assert drifted["canaries"]["alarms"] == ["rubric"], drifted["canaries"]
    assert judges["rubric"]["drift"] > 0.15 and judges["answer"]["alarm"] is False
    _, _, info = http(base, "/info")  # behind auth now; /healthz only says "alive"
    assert info["canary_alarms"] == ["rubric"]

    assert _wait_for(lambda: _scrape("ray_farm_canary_alarm", "rubric") == 1.0), "alarm metric never reached Prometheus"
    assert _scrape("ray_farm_canary_alarm", "answer") == 0.0
    logs = os.path.join(app_session_dir(), "logs", "serve", f"replica_{APP}_ingress_*.log")
    assert _wait_for(lambda: any("canary drift alarm: judge 'rubric'" in open(p).read() for p in glob.glob(logs)), 30)


def test_scheduled_probes_export_inflation_metrics(app):
    report = _wait_for(lambda: http(app["base"], "/integrity")[2]["probes"]["last"], 60)
    assert report is not None, "no scheduled probe run finished"
    assert set(report["inflation"]) == {"injection_suffix", "flattery"}
    assert set(report["findings"]) == {"answer", "rubric"}
    assert _wait_for(lambda: _scrape("ray_farm_probe_inflation", "rubric") is not None), "probe metrics never reached Prometheus"


def app_session_dir() -> str:
    import ray

    return ray._private.worker._global_node.get_session_dir_path()
