"""The Serve config and the builder's options, validated without starting Ray."""

from pathlib import Path

import pytest
import yaml

from deploy.options import DeploymentOptions, parse_config
from farm.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_serve_yaml_is_a_valid_serve_deploy_schema():
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(yaml.safe_load((REPO / "deploy/serve.yaml").read_text()))
    (app,) = schema.applications
    assert app.import_path == "deploy.app:build_app" and app.name == "reward-farm"


def test_builder_options_raise_serve_defaults_for_io_judges():
    from deploy.app import DEFAULTS, deployment_options

    options = deployment_options(DeploymentOptions(), DEFAULTS["bedrock"], {"A": "b"})
    assert options["max_ongoing_requests"] >= 100  # Serve's default of 5 would starve an API judge
    assert options["ray_actor_options"]["runtime_env"] == {"env_vars": {"A": "b"}}
    scaled = deployment_options(
        DeploymentOptions(autoscaling={"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 64}), DEFAULTS["bedrock"], {}
    )
    assert "num_replicas" not in scaled and scaled["autoscaling_config"]["max_replicas"] == 8
    ingress = deployment_options(DeploymentOptions(), DEFAULTS["ingress"], {}, retry_after_s=2.0)
    assert ingress["backpressure_config"].status_code == 503 and ingress["backpressure_config"].retry_after_s == 2.0


def test_autoscaling_typo_is_an_error_here_even_though_ray_ignores_it():
    with pytest.raises(ConfigError, match=r"unknown key `target_ongoing_request`.*did you mean `target_ongoing_requests`"):
        parse_config({"judges": [{"name": "a", "kind": "final_answer", "deployment": {"autoscaling": {"target_ongoing_request": 3}}}]})


def test_builder_args_are_validated():
    from deploy.app import FarmAppArgs

    with pytest.raises(ValueError, match="config_pth"):
        FarmAppArgs.model_validate({"config_pth": "x"})


def test_grafana_dashboard_queries_only_metrics_the_farm_exports():
    import json
    import re

    dashboard = json.loads((REPO / "deploy/grafana/reward_farm_dashboard.json").read_text())
    queried = {
        re.sub(r"_(bucket|sum|count)$", "", m)
        for p in dashboard["panels"]
        for t in p["targets"]
        for m in re.findall(r"ray_(farm_\w+)", t["expr"])
    }
    exported = set(re.findall(r'"(farm_\w+)"', (REPO / "deploy/metrics.py").read_text()))
    assert queried and queried <= exported, queried - exported
    assert {"farm_canary_alarm", "farm_probe_inflation"} <= queried
