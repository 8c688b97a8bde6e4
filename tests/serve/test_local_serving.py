"""Local judges on Serve: dynamic batching across concurrent requests, and the ensemble path."""

from __future__ import annotations

import asyncio

import pytest

from tests.serve.conftest import delete_apps, deploy

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.local]

CONFIG = {
    "judges": [
        {"name": "answer", "kind": "final_answer"},
        {"name": "sim", "kind": "similarity", "max_batch_size": 16, "batch_wait_timeout_s": 0.05, "max_length": 64},
    ],
    "serve": {"app_name": "local-test"},
}


def test_concurrent_requests_are_batched_and_scored(ray_serve):
    from ray import serve

    deploy(ray_serve, "local-test", {"config": CONFIG, "env": ray_serve["env"]}, "/local")
    judge = serve.get_deployment_handle("judge-sim", app_name="local-test")
    rows = [{"id": f"r{i}", "prompt": "p", "response": f"The answer is {i}.", "reference": "The answer is 7."} for i in range(48)]

    async def fire():
        from farm.wire import parse_rollout

        return await asyncio.gather(*(judge.score.remote([parse_rollout(r)]) for r in rows))

    verdicts = [v for batch in asyncio.run(fire()) for v in batch]
    assert all(v.status == "ok" for v in verdicts)
    assert verdicts[7].score == max(v.score for v in verdicts)  # identical to the reference
    sizes = judge.seen_batch_sizes.remote().result()
    assert sum(sizes) == 48 and max(sizes) >= 4, sizes  # 48 single-rollout requests shared forward passes

    info = judge.info.remote().result()
    assert info["device"] == "cpu"

    # the batch size changes at runtime through user_config, without reloading the model
    deploy(
        ray_serve, "local-test", {"config": CONFIG, "env": ray_serve["env"]}, "/local", user_configs={"judge-sim": {"max_batch_size": 2}}
    )
    before = len(judge.seen_batch_sizes.remote().result())
    asyncio.run(fire())
    after = judge.seen_batch_sizes.remote().result()
    assert len(after) > before and max(after[before:]) <= 2  # same replica (history kept), smaller batches

    (result,) = serve.get_app_handle("local-test").score.remote([{**rows[7], "id": "via-ingress"}]).result()
    assert result.judges["sim"].status == "ok" and result.judges["answer"].status == "ok"
    delete_apps("local-test")
