"""Cluster-wide quotas across replicas, and losing a judge replica under load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import gsm8k_rollouts, max_in_window
from tests.serve.conftest import delete_apps, deploy_together

pytestmark = [pytest.mark.ray, pytest.mark.slow]

PRO = "amazon.nova-pro-v1:0"


QUOTA_CONFIG: dict[str, Any] = {
    "judges": [
        {
            "name": "rubric",
            "kind": "rubric",
            "model": PRO,
            "deadline_s": 60,
            "criteria": [{"name": "correctness", "description": "The final answer is correct."}],
            "deployment": {"num_replicas": 4},
        }
    ],
    "bedrock": {"quotas": {PRO: {"rpm": 600, "tpm": 100000000, "burst_s": 1.0}}},
    "cache": {"enabled": False},
    "serve": {"app_name": "quota-test"},
}


KILL_CONFIG: dict[str, Any] = {
    "judges": [
        {"name": "answer", "kind": "final_answer"},
        {
            "name": "rubric",
            "kind": "rubric",
            "model": "amazon.nova-lite-v1:0",
            "deadline_s": 30,
            "criteria": [{"name": "correctness", "description": "The final answer is correct."}],
            "deployment": {"num_replicas": 2},
        },
    ],
    "bedrock": {"default_quota": {"rpm": 60000, "tpm": 100000000}},
    "cache": {"enabled": False},
    "serve": {"app_name": "kill-test"},
}


BUSY_CONFIG: dict[str, Any] = {
    "judges": [
        {
            "name": "rubric",
            "kind": "rubric",
            "model": "amazon.nova-lite-v1:0",
            "criteria": [{"name": "correctness", "description": "The final answer is correct."}],
        }
    ],
    "bedrock": {"default_quota": {"rpm": 60000, "tpm": 100000000}},
    "cache": {"enabled": False},
    "serve": {"app_name": "busy-test", "retry_after_s": 1, "ingress": {"max_ongoing_requests": 1, "max_queued_requests": 1}},
}


@pytest.fixture(scope="module")
def apps(ray_serve: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The module's three apps, deployed together (one Serve config, built side by side)."""
    specs = [
        ("quota-test", {"config": QUOTA_CONFIG, "env": ray_serve["env"]}, "/quota"),
        ("kill-test", {"config": KILL_CONFIG, "env": ray_serve["env"]}, "/kill"),
        ("busy-test", {"config": BUSY_CONFIG, "env": ray_serve["env"]}, "/busy"),
    ]
    deploy_together(ray_serve, specs)
    yield ray_serve
    delete_apps(*(name for name, _, _ in specs))


def test_four_replicas_share_one_quota(apps, reset_emulator, report):
    """Four judge replicas in four processes, one 600 rpm quota held by the quota actor."""
    from ray import serve

    reset_emulator.update(models={PRO: {"rpm": 600}}, burst_s=2.0, latency_ms=20)
    replicas = serve.status().applications["quota-test"].deployments["judge-rubric"].replica_states
    assert replicas.get("RUNNING") == 4
    handle = serve.get_app_handle("quota-test")
    rows = gsm8k_rollouts(limit=20)  # 80 rollouts, sent as 16 concurrent requests of 5
    started = time.monotonic()
    responses = [handle.score.remote(rows[i : i + 5]) for i in range(0, len(rows), 5)]
    results = [r for response in responses for r in response.result()]
    elapsed = time.monotonic() - started
    stats = reset_emulator.stats()[PRO]
    peak = max_in_window(stats.admitted_at, 1.0)
    report(
        f"cluster quota, 4 replicas, 600 rpm: {stats.received} calls seen, {stats.throttled} throttled, "
        f"peak {peak}/s, {len(results)} rollouts in {elapsed:.1f}s"
    )
    assert len(results) == 80 and all(r.status == "ok" for r in results)
    assert stats.throttled == 0
    assert peak <= 10 + 10 + 4  # rate + one second of burst + one lease of slack per replica
    assert elapsed >= (80 - 10) / 10 - 1.0  # the quota, not the replicas, set the pace


def test_killing_a_judge_replica_under_load_loses_no_request(apps, reset_emulator, report):
    import ray
    from ray import serve

    reset_emulator.update(latency_ms=200)
    handle = serve.get_app_handle("kill-test")
    judge = serve.get_deployment_handle("judge-rubric", app_name="kill-test")
    rows = gsm8k_rollouts(limit=40)  # 160 rollouts

    async def load() -> list[Any]:
        tasks = []
        for i in range(0, len(rows), 4):
            batch = [{**row, "id": f"{row['id']}-k"} for row in rows[i : i + 4]]
            tasks.append(asyncio.ensure_future(handle.score.remote(batch)))
            await asyncio.sleep(0.02)
            if i == 40:  # mid-stream, with requests in flight on both replicas
                victim = await judge.actor.remote()
                ray.kill(victim, no_restart=True)
        return [r for batch in await asyncio.gather(*tasks) for r in batch]

    results = asyncio.run(load())
    ids = [r.id for r in results]
    statuses = {status: sum(r.status == status for r in results) for status in ("ok", "partial", "failed")}
    report(f"replica killed under load: {len(results)}/160 answered, by status {statuses}")
    assert sorted(ids) == sorted(f"{row['id']}-k" for row in rows)  # none missing, none duplicated
    for result in results:
        rubric = result.judges["rubric"]
        assert rubric.status == "ok" or (rubric.score is None and rubric.error)
        assert result.reward is not None  # the rule judge keeps the quorum
    # the farm recovers: Serve replaces the replica and new requests succeed on both
    time.sleep(1.0)
    after = handle.score.remote([{**rows[0], "id": "after", "response": rows[0]["response"] + " again"}]).result()
    assert after[0].judges["rubric"].status == "ok"


def test_overload_answers_503_with_retry_after_not_a_hang(apps, reset_emulator):
    """A full ingress queue is refused at once with Retry-After; the HTTP client backs off and succeeds."""
    import concurrent.futures

    from farm.client import HttpFarmClient
    from tests.serve.conftest import TOKEN, http

    reset_emulator.update(latency_ms=1500)
    base = apps["url"] + "/busy"
    bodies = [{"rollouts": [{"id": f"b{i}", "prompt": "2+2?", "response": f"A: {i}", "reference": "4"}]} for i in range(6)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda body: http(base, "/score", body), bodies))
    statuses = sorted(status for status, _, _ in answers)
    refused = [headers for status, headers, _ in answers if status == 503]
    assert statuses.count(200) >= 1 and refused, statuses
    assert all(h.get("Retry-After", h.get("retry-after")) == "1" for h in refused)
    assert time.monotonic() - started < 10  # refused at once, not queued until a timeout
    results = HttpFarmClient(base, token=TOKEN, retries=10).score([b["rollouts"][0] for b in bodies])
    assert [r.id for r in results] == [f"b{i}" for i in range(6)] and all(r.status == "ok" for r in results)
