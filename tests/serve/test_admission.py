"""Online, the farm refuses what its quota cannot serve in time, and deadlines count queue time."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.serve.conftest import delete_apps, deploy_together, http

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.integration]

PRO = "amazon.nova-pro-v1:0"
LITE = "amazon.nova-lite-v1:0"


def _rows(prefix: str, count: int) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i}", "prompt": "What is 6*7?", "response": f"6*7 = 42. A: 42 ({prefix}{i})", "reference": "42"}
        for i in range(count)
    ]


def _rubric(model: str, deadline_s: float, **deployment: Any) -> dict[str, Any]:
    return {
        "name": "rubric",
        "kind": "rubric",
        "model": model,
        "deadline_s": deadline_s,
        "criteria": [{"name": "correctness", "description": "The final answer is correct."}],
        "deployment": deployment,
    }


def _wait_for_calls(emulator: Any, model: str, count: int, timeout_s: float = 60.0) -> None:
    """Until the emulator has seen `count` calls for `model`: an order of events, not a guessed sleep."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = emulator.stats().get(model)
        if stats is not None and stats.received >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no call for {model} reached the emulator within {timeout_s}s")


def test_time_queued_before_a_judge_replica_counts_against_the_deadline(admission_apps, reset_emulator):
    """One judge replica takes one request at a time and each call takes 3 s; with a 5 s
    deadline, the request queued behind another has about 2 s left when it starts, and says so
    at about 5 s, instead of restarting its deadline at the replica and answering after 6 s."""
    from ray import serve

    reset_emulator.update(latency_ms=3000)
    handle = serve.get_app_handle("queue-test")
    handle.score.remote(_rows("warm", 1)).result()  # the replica's client and quota lease are set up
    first = handle.score.remote(_rows("x", 1))
    time.sleep(0.2)
    second = handle.score.remote(_rows("y", 1))
    (a,) = first.result(timeout_s=60)
    (b,) = second.result(timeout_s=60)
    assert a.judges["rubric"].status == "ok"
    late = b.judges["rubric"]
    assert late.status in ("timeout", "failed") and late.score is None and "deadline" in late.error
    assert b.status == "partial" and b.reward is not None  # the rule judge still answers


def _queue_config() -> dict[str, Any]:
    """One judge replica that takes one request at a time, with a 5 s deadline."""
    return {
        "judges": [{"name": "answer", "kind": "final_answer"}, _rubric(LITE, 5, num_replicas=1, max_ongoing_requests=1)],
        "bedrock": {"default_quota": {"rpm": 60000, "tpm": 100000000}},
        "cache": {"enabled": False},
        "serve": {"app_name": "queue-test"},
    }


def _admit_config() -> dict[str, Any]:
    """A rubric judge on Pro at 120 rpm with a 10 s deadline."""
    return {
        "judges": [_rubric(PRO, 10)],
        "bedrock": {"quotas": {PRO: {"rpm": 120, "tpm": 100_000_000, "burst_s": 1.0}}},
        "cache": {"enabled": False},
        "serve": {"app_name": "admit-test"},
    }


@pytest.fixture(scope="module")
def admission_apps(ray_serve: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The module's two apps, deployed together (a deployment costs more than any test here)."""
    specs = [
        ("queue-test", {"config": _queue_config(), "env": ray_serve["env"]}, "/queue"),
        ("admit-test", {"config": _admit_config(), "env": ray_serve["env"]}, "/admit"),
    ]
    deploy_together(ray_serve, specs)
    yield ray_serve
    delete_apps(*(name for name, _, _ in specs))


@pytest.fixture
def admit_app(admission_apps: dict[str, Any]) -> str:
    """The app of the two tests of a full quota. Its URL."""
    return admission_apps["url"] + "/admit"


def test_work_the_quota_cannot_serve_in_time_is_refused_early_never_answered_partial(admit_app, reset_emulator, report):
    """120 rpm and a 10 s deadline serve about 16 calls: a 12-rollout request is admitted and
    complete; a second one while it runs gets 503 with a Retry-After from the quota; a request
    too big for the quota ever gets 413; the second succeeds once the first is done."""
    base = admit_app
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(http, base, "/score", {"rollouts": _rows("a", 12)})
        _wait_for_calls(reset_emulator, PRO, 1)  # the first request is admitted and its calls are flowing
        status_b, headers_b, body_b = http(base, "/score", {"rollouts": _rows("b", 12)})
        status_c, _, body_c = http(base, "/score", {"rollouts": _rows("c", 40)})
        status_a, _, body_a = first.result(timeout=120)
    retry_after = headers_b.get("Retry-After", headers_b.get("retry-after"))
    report(f"admission at 120 rpm, 10 s deadline: first {status_a}, second {status_b} (Retry-After {retry_after}), too big {status_c}")
    assert status_a == 200 and all(r["status"] == "ok" for r in body_a["results"])  # a 200 carries complete rewards
    assert status_b == 503 and retry_after is not None and int(retry_after) >= 1
    assert "booked" in body_b["error"] and PRO in body_b["error"]
    assert status_c == 413 and "split the batch" in body_c["error"]
    status, _, body = http(base, "/score", {"rollouts": _rows("b", 12)})  # the backlog has drained
    assert status == 200 and all(r["status"] == "ok" for r in body["results"])


def test_openrlhf_waits_for_admission_instead_of_refusing(admit_app, reset_emulator, report):
    """OpenRLHF ignores Retry-After, logs the URL (holding its path token) on any error status and
    dies after five retries a second apart, so `/openrlhf` waits for the backlog instead of a 503."""
    base = admit_app
    rows = _rows("o", 12)
    query = {"query": [r["prompt"] + "\n" + r["response"] for r in rows], "prompts": [r["prompt"] + "\n" for r in rows]}
    query["labels"] = ["42"] * len(rows)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(http, base, "/score", {"rollouts": _rows("a", 12)})
        _wait_for_calls(reset_emulator, PRO, 1)  # the first request is admitted and holds the quota
        status_o, _, body_o = http(base, "/openrlhf", query)
        status_a, _, _ = first.result(timeout=120)
    report(f"/openrlhf behind a full quota: {status_o}")
    assert status_a == 200
    assert status_o == 200, body_o
    assert body_o["extra_logs"]["farm_failed"] == [0.0] * len(rows) and len(body_o["rewards"]) == len(rows)
