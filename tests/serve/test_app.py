"""The ensemble graph on real Ray + Serve, judges calling the emulator over loopback HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from farm.flags import Flag
from tests.conftest import REPO, gsm8k_rollouts
from tests.serve.conftest import TOKEN, delete_apps, deploy, http

pytestmark = [pytest.mark.ray, pytest.mark.slow]

APP = "farm-test"
LITE, MICRO = "amazon.nova-lite-v1:0", "amazon.nova-micro-v1:0"
CONFIG: dict[str, Any] = {
    "judges": [
        {"name": "answer", "kind": "final_answer"},
        {
            "name": "rubric",
            "kind": "rubric",
            "model": LITE,
            "deadline_s": 3,
            "criteria": [{"name": "correctness", "description": "The final answer is correct."}],
        },
        {"name": "preference", "kind": "preference", "model": MICRO, "deadline_s": 10},
    ],
    "bedrock": {"default_quota": {"rpm": 60000, "tpm": 100000000}, "retry": {"max_attempts": 2, "base_delay_s": 0.01}},
    "serve": {"app_name": APP, "route_prefix": "/farm", "max_request_bytes": 200000, "max_rollouts_per_request": 64},
}


@pytest.fixture(scope="module")
def app(ray_serve):
    from ray import serve

    deploy(ray_serve, APP, {"config": CONFIG, "env": ray_serve["env"]}, "/farm")
    # one request first: a cold judge replica builds its Bedrock client, which on a loaded 2-core
    # machine alone can take most of the rubric's 3 s deadline; the tests are about steady state
    serve.get_app_handle(APP).score.remote([{"id": "warm-up", "prompt": "What is 1+1?", "response": "A: 2", "reference": "2"}]).result()
    yield {**ray_serve, "base": ray_serve["url"] + "/farm"}
    delete_apps(APP)


def rows(n_questions: int = 3) -> list[dict]:
    return gsm8k_rollouts(limit=n_questions)


def test_fan_out_to_three_judges_through_the_handle(app):
    from ray import serve

    data = rows(3)
    results = serve.get_app_handle(APP).score.remote(data).result()
    assert [r.id for r in results] == [row["id"] for row in data]
    for result in results:
        assert set(result.judges) == {"answer", "rubric", "preference"}
        assert result.status == "ok" and result.reward is not None
        assert all(v.status == "ok" for v in result.judges.values())
    labels = {row["id"]: row["metadata"]["is_correct"] for row in data}
    for result in results:
        assert result.judges["answer"].score == (1.0 if labels[result.id] else 0.0)


def test_rule_judge_runs_in_the_ingress_and_remote_judges_get_one_call_per_request(app):
    """The rule judge has no deployment of its own yet answers; each Bedrock judge's replica gets a
    request's rollouts as one batch, one call per request (not one per rollout)."""
    from ray import serve

    deployments = set(serve.status().applications[APP].deployments)
    assert deployments == {"ingress", "judge-rubric", "judge-preference"}
    judges = {name: serve.get_deployment_handle(f"judge-{name}", app_name=APP) for name in ("rubric", "preference")}
    before = {name: handle.stats.remote().result() for name, handle in judges.items()}
    data = [{**row, "id": row["id"] + "-batch"} for row in rows(3)]  # 3 questions → 12 rollouts in groups of 4
    results = serve.get_app_handle(APP).score.remote(data).result()
    assert len(results) == len(data) > 1
    assert all(r.judges["answer"].status == "ok" and r.judges["answer"].score is not None for r in results)
    for name, handle in judges.items():
        after = handle.stats.remote().result()
        assert after["requests"] - before[name]["requests"] == 1, name
        assert after["rollouts"] - before[name]["rollouts"] == len(data), name
    # tokens: each replica measures what its judge writes, per kind of call (max_tokens: auto)
    assert judges["rubric"].stats.remote().result()["max_tokens"]["rubric"]["answers"] >= len(data)
    assert judges["preference"].stats.remote().result()["max_tokens"]["listwise/5"]["ceiling"] == 384  # 4 responses + reference


def test_http_score_healthz_and_openrlhf(app):
    status, _, body = http(app["base"], "/score", {"rollouts": rows(1)})
    assert status == 200 and len(body["results"]) == 4
    assert set(body["results"][0]["judges"]) == {"answer", "rubric", "preference"}
    status, _, health = http(app["base"], "/healthz", token=None)
    assert status == 200 and health == {"status": "ok"}  # alive, and nothing of the config
    status, _, info = http(app["base"], "/info")
    assert status == 200 and info["judges"] == ["answer", "rubric", "preference"]
    query = {"query": ["Q: 2+3?\nA: 5", "Q: 2+3?\nA: 6"], "prompts": ["Q: 2+3?\n", "Q: 2+3?\n"], "labels": ["5", "5"]}
    status, _, body = http(app["base"], "/openrlhf", query)
    assert status == 200 and len(body["rewards"]) == 2 and body["rewards"][0] > body["rewards"][1]
    assert body["extra_logs"]["farm_failed"] == [0.0, 0.0]


def test_auth_size_and_validation_errors(app):
    status, headers, body = http(app["base"], "/score", {"rollouts": rows(1)}, token=None)
    assert status == 401 and headers.get("www-authenticate", headers.get("WWW-Authenticate")) == "Bearer"
    assert http(app["base"], "/score", {"rollouts": []}, token="wrong")[0] == 401
    status, _, body = http(app["base"], "/score", raw=b'{"rollouts": [' + b" " * 300_000 + b"]}")
    assert status == 413 and "exceeds the limit" in body["error"]
    many = [{"id": str(i), "prompt": "p", "response": "r"} for i in range(65)]
    assert http(app["base"], "/score", {"rollouts": many})[0] == 413
    status, _, body = http(app["base"], "/score", {"rollouts": [{"id": "a", "prompt": "p", "response": "r"}, {"id": "b", "prompt": "p"}]})
    assert status == 422 and body["field"] == "response" and body["index"] == 1 and "'b'" in body["error"]
    status, _, body = http(app["base"], "/score", {"rollouts": "nope"})
    assert status == 422 and body["field"] == "rollouts"
    assert http(app["base"], "/score", raw=b"{not json")[0] == 400
    assert http(app["base"], "/nowhere", {"x": 1})[0] == 404
    assert http(app["base"], "/nowhere", {"x": 1}, token=None)[0] == 401  # routes are not probed without a token
    status, _, body = http(app["base"], "/score")  # a known path with the wrong method
    assert status == 404 and "no route GET /farm/score; use POST /score" in body["error"]
    status, _, body = http(app["base"], f"/openrlhf/{TOKEN}")  # OpenRLHF's path token: checked, never echoed
    assert status == 404 and TOKEN not in body["error"] and "/openrlhf/<token>" in body["error"]


def test_one_judge_down_gives_partial_never_zero(app, reset_emulator):
    reset_emulator.update(models={MICRO: {"access": "denied"}})
    data = [{**row, "id": row["id"] + "-down", "response": row["response"] + " (down)"} for row in rows(1)]
    status, _, body = http(app["base"], "/score", {"rollouts": data})
    assert status == 200
    for result in body["results"]:
        assert result["status"] == "partial" and "judge_failed" in result["flags"]
        assert result["judges"]["preference"]["status"] == "failed" and result["judges"]["preference"]["score"] is None
        assert "AccessDeniedException" in result["judges"]["preference"]["error"]
        assert result["reward"] is not None


def test_slow_judge_times_out_into_partial(app, reset_emulator):
    reset_emulator.update(models={LITE: {"latency_ms": 8000}})
    data = [{**row, "id": row["id"] + "-slow", "response": row["response"] + " (slow)"} for row in rows(1)]
    started = time.monotonic()
    status, _, body = http(app["base"], "/score", {"rollouts": data})
    assert status == 200 and time.monotonic() - started < 8
    for result in body["results"]:
        assert result["judges"]["rubric"]["status"] == "timeout" and result["judges"]["rubric"]["score"] is None
        assert result["status"] == "partial" and Flag.JUDGE_FAILED in result["flags"]


def test_quorum_missed_when_judges_fail(app, reset_emulator):
    reset_emulator.update(models={LITE: {"access": "denied"}, MICRO: {"access": "denied"}})
    from ray import serve

    bad = [{"id": "lonely", "prompt": "p", "response": "no reference here"}]
    (result,) = serve.get_app_handle(APP).score.remote(bad).result()
    assert result.reward is None and result.status == "failed"
    assert Flag.QUORUM_MISSED in result.flags and result.judges["answer"].status == "skipped"


def test_runtime_reweighting_through_user_config(app):
    from ray import serve

    _, _, before = http(app["base"], "/info")
    # what an operator does: edit the ingress user_config in the Serve YAML and `serve deploy` it
    deploy(app, APP, {"config": CONFIG, "env": app["env"]}, "/farm", ingress_user_config={"weights": {"answer": 0.0}})
    _, _, after = http(app["base"], "/info")
    assert after["weights"]["answer"] == 0.0 and before["weights"]["answer"] == 1.0
    assert after["started_at"] == before["started_at"]  # reconfigured in place, not restarted
    assert after["reconfigured"] == before["reconfigured"] + 1
    (result,) = serve.get_app_handle(APP).score.remote([rows(1)[1]]).result()
    others = [result.judges[n].score for n in ("rubric", "preference") if result.judges[n].score is not None]
    assert result.reward == pytest.approx(sum(others) / len(others))
    deploy(app, APP, {"config": CONFIG, "env": app["env"]}, "/farm", ingress_user_config={"weights": {"answer": 1.0}})


def test_cascade_switched_on_through_user_config_spares_nova_where_the_rule_settles(app, serve_emulator):
    from ray import serve

    cascade = {"aggregation": {"escalate": {"enabled": True}}}  # no restart: the ingress reconfigures in place
    deploy(app, APP, {"config": CONFIG, "env": app["env"]}, "/farm", ingress_user_config=cascade)
    try:
        settled, open_ended = rows(1)[:2]
        open_ended = {**open_ended, "id": "open", "reference": None, "group": "open"}  # its own group: scope is group
        before = {m: s.received for m, s in serve_emulator.stats().items()}
        results = serve.get_app_handle(APP).score.remote([settled, open_ended]).result()
        calls = {m: s.received - before.get(m, 0) for m, s in serve_emulator.stats().items()}
    finally:
        deploy(app, APP, {"config": CONFIG, "env": app["env"]}, "/farm", ingress_user_config={})
    done, escalated = results
    assert done.escalation == {"answer": "ran", "rubric": "not_needed", "preference": "not_needed"}
    assert all(type(reason) is str for reason in done.escalation.values())  # plain strings on the wire
    assert done.status == "ok" and done.reward == done.judges["answer"].score
    assert escalated.escalation == {"answer": "ran", "rubric": "no_reference", "preference": "no_reference"}
    assert done.judges["rubric"].status == "skipped" and "not needed" in done.judges["rubric"].error
    # the rubric replica was asked for the escalated rollout alone (on a loaded machine its quota wait may run out: a
    # failed verdict with its reason, still never a call for the settled rollout)
    assert escalated.judges["rubric"].status != "skipped", escalated.judges["rubric"].error
    assert calls.get(LITE, 0) <= 1
    if escalated.judges["rubric"].status == "ok":
        assert calls[LITE] == 1


def test_handle_client_from_a_second_process(app):
    code = (
        "import json, sys\n"
        "from farm.client import FarmClient\n"
        f"client = FarmClient({APP!r}, batch_size=4)\n"
        "rows = [json.loads(line) for line in sys.stdin]\n"
        "results = client.score(rows)\n"
        "print(json.dumps([[r.id, r.reward, r.status] for r in results]))\n"
    )
    data = rows(3)
    env = {**os.environ, "RAY_ADDRESS": app["gcs"]}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input="\n".join(json.dumps(r) for r in data),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    answered = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [a[0] for a in answered] == [r["id"] for r in data]
    assert all(a[2] == "ok" and a[1] is not None for a in answered)


def test_async_handle_and_http_clients(app):
    import asyncio

    from farm.client import FarmClient, FarmHTTPError, HttpFarmClient

    data = rows(2)
    results = asyncio.run(FarmClient(APP, batch_size=3).score_async(data))
    assert [r.id for r in results] == [r["id"] for r in data]
    http_results = HttpFarmClient(app["base"], token=TOKEN, batch_size=3).score(data)
    assert [r.reward for r in http_results] == [r.reward for r in results]
    with pytest.raises(FarmHTTPError, match="401"):
        HttpFarmClient(app["base"], token="wrong").score(data[:1])


def test_trl_reward_function_with_grpo_calling_convention(app):
    import pickle

    from farm.adapters.trl import FarmReward

    reward = pickle.loads(pickle.dumps(FarmReward(url=app["base"], token=TOKEN, reference_column="answer")))
    assert reward.__name__ == "farm_reward"
    prompts = [[{"role": "user", "content": "What is 9*2?"}]] * 2 + [[{"role": "user", "content": "What is 3+4?"}]] * 2
    completions = [[{"role": "assistant", "content": c}] for c in ("A: 18", "A: 20", "A: 7", "")]
    rewards = reward(prompts=prompts, completions=completions, completion_ids=[[1]] * 4, answer=["18", "18", "7", "7"], trainer_state=None)
    assert len(rewards) == 4 and rewards[0] > rewards[1] and rewards[2] > 0.5
    assert rewards[3] == 0.0  # the empty completion, flagged empty_response by the farm


def test_trl_failed_rollout_is_none_not_zero(app, reset_emulator):
    from farm.adapters.trl import FarmReward

    reset_emulator.update(models={LITE: {"access": "denied"}, MICRO: {"access": "denied"}})
    reward = FarmReward(url=app["base"], token=TOKEN)  # no reference: the rule judge abstains too
    assert reward(prompts=["Say hi"], completions=["hi there"]) == [None]


def test_verl_compute_score_single_and_batched(app, monkeypatch):
    import farm.adapters.verl as verl

    monkeypatch.setenv("FARM_URL", app["base"])
    monkeypatch.setenv("FARM_API_TOKEN", TOKEN)
    monkeypatch.setattr(verl, "_client", None)
    single = verl.compute_score("openai/gsm8k", "so 9*2 = 18\n#### 18", "18", {"index": 7, "question": "What is 9*2?"})
    assert single["score"] > 0.5 and single["farm_failed"] == 0.0 and single["farm_judge_answer"] == 1.0
    batch = verl.compute_score(
        data_sources=["gsm8k", "gsm8k"],
        solution_strs=["#### 18", "#### 19"],
        ground_truths=["18", "18"],
        extra_infos=[{"index": 1}, {"index": 2}],
    )
    assert batch[0]["score"] > batch[1]["score"]


def test_nova_rft_lambda_handler(app, monkeypatch):
    from farm.adapters.nova_rft import lambda_handler

    monkeypatch.setenv("FARM_URL", app["base"])
    monkeypatch.setenv("FARM_API_TOKEN", TOKEN)
    import farm.adapters.common  # noqa: F401  (the handler builds its client from the environment)

    event = [
        {
            "id": "rft-1",
            "messages": [{"role": "user", "content": "What is 6*7?"}, {"role": "nova_assistant", "content": "A: 42"}],
            "metadata": {"reference_answer": "42", "my_key": "sample-001"},
        }
    ]
    (out,) = lambda_handler(event, None)
    assert out["id"] == "rft-1" and 0.0 <= out["aggregate_reward_score"] <= 1.0
    names = {m["name"]: m for m in out["metrics_list"]}
    assert (
        names["reward"]["type"] == "Reward"
        and names["farm_judge_answer"]["value"] == 1.0
        and names["farm_judge_answer"]["type"] == "Metric"
    )


def test_metrics_reach_rays_prometheus_endpoint(app):
    """The farm's counters and histograms, scraped the way Prometheus does."""
    import urllib.request

    import ray

    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    http(app["base"], "/score", {"rollouts": [{**rows(1)[0], "id": "metrics-probe", "response": "A: 12 (metrics)"}]})
    wanted = ("ray_farm_results_total", "ray_farm_judge_verdicts_total", "ray_farm_judge_latency_ms_bucket", "ray_farm_request_latency_ms")
    deadline = time.monotonic() + 60
    body = ""
    while time.monotonic() < deadline:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        if all(name in body for name in wanted):
            break
        time.sleep(1)
    missing = [name for name in wanted if name not in body]
    assert not missing, missing
    assert 'judge="rubric"' in body and f'app="{APP}"' in body
