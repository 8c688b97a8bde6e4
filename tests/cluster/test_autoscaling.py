"""Autoscaling on a fake multi-node cluster whose node types mirror deploy/cluster/aws.yaml:
load on a local (GPU) judge makes Serve add replicas and the autoscaler add a fake GPU worker;
when the load stops, both scale back."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.serve.conftest import free_port

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.local]

BASE = Path(__file__).with_name("fake_multinode_base.yaml")


def fake_node_types() -> dict[str, Any]:
    """The AWS YAML's worker types, shrunk to fit one machine: same names, same resource kinds."""
    aws = yaml.safe_load((REPO / "deploy/cluster/aws.yaml").read_text())["available_node_types"]
    cpu = aws["cpu_api"]
    gpu = aws["gpu_g5"]
    assert "GPU" in gpu["resources"] and "GPU" not in cpu["resources"]
    return {
        "cpu_api": {"resources": {"CPU": 2}, "node_config": {}, "min_workers": 1, "max_workers": 1},
        "gpu_g5": {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2},
    }


def gpu_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU", 0) > 0)


def running_replicas(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications.get(app)
    if status is None or deployment not in status.deployments:
        return 0
    return status.deployments[deployment].replica_states.get("RUNNING", 0)


def wait_for(predicate: Any, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"condition not met within {timeout_s}s")


def test_gpu_judge_load_scales_up_then_back_down(report):
    import ray
    from ray import serve
    from ray.cluster_utils import AutoscalingCluster

    from deploy.app import build_app

    class FarmAutoscalingCluster(AutoscalingCluster):
        def _generate_config(self, head_resources, worker_node_types, autoscaler_v2=False, **config_kwargs):
            config = yaml.safe_load(BASE.read_text())
            config["available_node_types"] = {
                **worker_node_types,
                "ray.head.default": {"resources": head_resources, "node_config": {}, "max_workers": 0},
            }
            config.update(config_kwargs)
            return config

    cluster = FarmAutoscalingCluster(head_resources={"CPU": 0}, worker_node_types=fake_node_types())
    cluster.start()
    try:
        ray.init(address="auto")
        # Requests go through a handle, so one proxy on the head is enough. With a proxy on every node, Serve keeps
        # a GPU node's proxy draining for 30 s after its replica has gone, and that proxy keeps the node from idling.
        serve.start(
            proxy_location="HeadOnly",
            http_options={"host": "127.0.0.1", "port": free_port()},
            logging_config={"log_level": "WARNING"},
        )
        config: dict[str, Any] = {
            "judges": [
                {
                    "name": "sim",
                    "kind": "similarity",
                    "max_length": 32,
                    "max_batch_size": 4,
                    "deployment": {
                        "num_cpus": 0.5,
                        "num_gpus": 1,
                        "autoscaling": {
                            "min_replicas": 0,
                            "max_replicas": 2,
                            "target_ongoing_requests": 2,
                            "upscale_delay_s": 0,
                            "downscale_delay_s": 1,
                            "metrics_interval_s": 0.5,
                            "look_back_period_s": 2,
                        },
                    },
                }
            ],
            "serve": {"app_name": "scale-test"},
        }
        serve.run(build_app({"config": config}), name="scale-test", route_prefix="/scale")
        assert gpu_nodes() == 0 and running_replicas("scale-test", "judge-sim") == 0
        handle = serve.get_app_handle("scale-test")
        stop = threading.Event()
        answered: list[str] = []
        problems: list[str] = []

        def caller(k: int) -> None:
            i = 0
            while not stop.is_set():
                row = {"id": f"c{k}-{i}", "prompt": "p", "response": f"The answer is {i}.", "reference": "The answer is 7."}
                (result,) = handle.score.remote([row]).result()
                if result.judges["sim"].status != "ok":
                    problems.append(f"{result.id}: {result.judges['sim']}")
                answered.append(result.id)
                i += 1

        threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(8)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        first_gpu = wait_for(lambda: gpu_nodes() >= 1, 180)
        wait_for(lambda: running_replicas("scale-test", "judge-sim") >= 2 and gpu_nodes() >= 2, 180)
        up_s = time.monotonic() - started
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        stopped = time.monotonic()
        wait_for(lambda: running_replicas("scale-test", "judge-sim") == 0, 120)
        replicas_down_s = time.monotonic() - stopped
        wait_for(lambda: gpu_nodes() == 0, 180)
        nodes_down_s = time.monotonic() - stopped
        report(
            f"fake cluster scale-up: first GPU node {first_gpu:.1f}s, 2 replicas on 2 GPU nodes {up_s:.1f}s after load began; "
            f"scale-down after load stopped: replicas 0 in {replicas_down_s:.1f}s, GPU nodes 0 in {nodes_down_s:.1f}s; "
            f"{len(answered)} requests answered"
        )
        assert answered and not problems, problems[:3]
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
            cluster.shutdown()
