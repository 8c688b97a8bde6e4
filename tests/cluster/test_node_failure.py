"""Losing the node that hosts the judge replicas, under load: every request is answered, then
the farm recovers on a new node."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.cluster.conftest import emulator_env
from tests.conftest import gsm8k_rollouts
from tests.serve.conftest import free_port

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_removing_the_judge_node_loses_no_request(cluster_emulator, report):
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from deploy.app import build_app

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    judge_node = cluster.add_node(num_cpus=2, resources={"judge_host": 4})
    ray.init(address=cluster.address)
    try:
        serve.start(  # requests go through a handle: one proxy on the head, none to start on each node
            proxy_location="HeadOnly",
            http_options={"host": "127.0.0.1", "port": free_port()},
            logging_config={"log_level": "WARNING"},
        )
        config: dict[str, Any] = {
            "judges": [
                {"name": "answer", "kind": "final_answer"},
                {
                    "name": "rubric",
                    "kind": "rubric",
                    "model": "amazon.nova-lite-v1:0",
                    "deadline_s": 3,  # the requests queued for the lost replicas wait this long, then say so
                    "criteria": [{"name": "correctness", "description": "The final answer is correct."}],
                    "deployment": {"num_replicas": 2, "resources": {"judge_host": 1}},
                },
            ],
            "bedrock": {"default_quota": {"rpm": 60000, "tpm": 100000000}},
            "cache": {"enabled": False},
            "serve": {"app_name": "node-test"},
        }
        serve.run(build_app({"config": config, "env": emulator_env(cluster_emulator)}), name="node-test", route_prefix="/node")
        handle = serve.get_app_handle("node-test")
        rows = gsm8k_rollouts(limit=40)
        handle.score.remote([{**rows[0], "id": "warm-up", "response": "A: 1"}]).result()  # quota actor, clients

        async def load() -> list[Any]:
            tasks = []
            for i in range(0, len(rows), 4):
                tasks.append(asyncio.ensure_future(handle.score.remote([{**r, "id": r["id"] + "-n"} for r in rows[i : i + 4]])))
                await asyncio.sleep(0.05)
                if i == 60:
                    cluster.remove_node(judge_node)  # the node with both rubric replicas goes away
            return [r for batch in await asyncio.gather(*tasks) for r in batch]

        started = time.monotonic()
        results = asyncio.run(load())
        statuses = {s: sum(r.status == s for r in results) for s in ("ok", "partial", "failed")}
        rubric = {s: sum(r.judges["rubric"].status == s for r in results) for s in ("ok", "failed", "timeout")}
        elapsed = time.monotonic() - started
        report(f"judge node removed under load: {len(results)}/160 answered in {elapsed:.1f}s, {statuses}, rubric {rubric}")
        assert sorted(r.id for r in results) == sorted(r["id"] + "-n" for r in rows)  # none lost, none doubled
        assert rubric["ok"] > 0 and rubric["ok"] < len(results)  # served before the loss, reported failed after
        for result in results:
            verdict = result.judges["rubric"]
            assert verdict.status == "ok" or (verdict.score is None and verdict.error)  # answered or reported failed
            assert result.reward is not None  # the rule judge on the surviving node keeps the quorum

        # recovery: a new node with the resource, Serve places the replicas there, rubric answers again
        cluster.add_node(num_cpus=2, resources={"judge_host": 4})
        joined = time.monotonic()
        deadline = joined + 120
        while time.monotonic() < deadline:
            (after,) = handle.score.remote(
                [{**rows[0], "id": "recovered", "response": rows[0]["response"] + f" {time.monotonic()}"}]
            ).result()
            if after.judges["rubric"].status == "ok":
                break
            time.sleep(1)
        report(f"judge node replaced: rubric answering again {time.monotonic() - joined:.1f}s after the new node joined")
        assert after.judges["rubric"].status == "ok"
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
