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


RUBRIC = {"name": "rubric", "kind": "rubric", "model": "m", "criteria": [{"name": "c", "description": "d"}]}


def _bound_judges(config: dict) -> set[str]:
    """The judge deployments `build_app` binds behind the ingress (building binds; it starts nothing)."""
    from deploy.app import build_app

    ingress = build_app({"config": config, "check_model_paths": False})._bound_deployment
    return set(ingress.init_args[0])


def test_rule_judges_run_in_the_ingress_unless_placed_in_a_deployment():
    judges = [{"name": "answer", "kind": "final_answer"}, {"name": "format", "kind": "regex", "pattern": "x"}, RUBRIC]
    assert _bound_judges({"judges": judges}) == {"rubric"}
    judges[1] = {**judges[1], "deployment": {"placement": "deployment", "num_replicas": 2}}
    assert _bound_judges({"judges": judges}) == {"format", "rubric"}
    from deploy.placement import check_placements
    from farm.config import load_config

    for shipped in (REPO / "deploy/farm.cluster.yaml", None):  # None: the packaged default
        check_placements(load_config(shipped))


def test_impossible_or_ignored_placements_are_refused_naming_the_field():
    from deploy.app import build_app

    with pytest.raises(ConfigError, match=r"judges\[0\] \('rubric'\): deployment.placement is 'ingress', but only rule judges"):
        build_app({"config": {"judges": [{**RUBRIC, "deployment": {"placement": "ingress"}}]}})
    with pytest.raises(ConfigError, match=r"judges\[1\] \('answer'\): deployment.num_replicas is set, but the judge runs in the ingress"):
        build_app({"config": {"judges": [RUBRIC, {"name": "answer", "kind": "final_answer", "deployment": {"num_replicas": 2}}]}})
    with pytest.raises(ConfigError, match="placement"):
        parse_config({"judges": [{"name": "a", "kind": "final_answer", "deployment": {"placement": "sidecar"}}]})


def test_bedrock_judge_concurrency_is_sized_from_quota_times_deadline():
    from deploy.app import DEFAULTS, _judge_deployment
    from deploy.placement import MAX_ONGOING_CAP

    def ongoing(rpm: int, deadline_s: float, **deployment) -> int:
        config = parse_config(
            {
                "judges": [{**RUBRIC, "deadline_s": deadline_s, "deployment": deployment}],
                "bedrock": {"quotas": {"m": {"rpm": rpm, "tpm": 10**9}}},
            }
        )
        return _judge_deployment(config.judges[0], config, {})[1]["max_ongoing_requests"]

    floor = DEFAULTS["bedrock"].max_ongoing_requests
    assert ongoing(100, 30) == floor  # a small quota never goes below the kind's default
    assert ongoing(2_000, 60) == 2_000  # 2,000 rpm × 60 s: as many 1-rollout requests as the quota can finish in a deadline
    assert ongoing(2_000, 60, num_replicas=4) == 500  # spread over the replicas
    assert ongoing(200_000, 60) == MAX_ONGOING_CAP
    assert ongoing(2_000, 60, max_ongoing_requests=7) == 7  # what the user sets wins


def test_ingress_takes_as_many_requests_as_its_busiest_bedrock_judge():
    from deploy.app import DEFAULTS, build_app

    def ingress_ongoing(config: dict) -> int:
        return build_app({"config": config})._bound_deployment._deployment_config.max_ongoing_requests

    rules = [{"name": "answer", "kind": "final_answer"}]
    quotas = {"bedrock": {"quotas": {"m": {"rpm": 6_000, "tpm": 10**9}}}}
    assert ingress_ongoing({"judges": rules}) == DEFAULTS["ingress"].max_ongoing_requests  # no Bedrock judge: the default
    assert ingress_ongoing({"judges": [*rules, {**RUBRIC, "deadline_s": 30}], **quotas}) == 3_000  # 6,000 rpm × 30 s
    two = {"serve": {"ingress": {"num_replicas": 2}}}
    assert ingress_ongoing({"judges": [{**RUBRIC, "deadline_s": 30}], **quotas, **two}) == 1_500
    mine = {"serve": {"ingress": {"max_ongoing_requests": 9}}}
    assert ingress_ongoing({"judges": [{**RUBRIC, "deadline_s": 30}], **quotas, **mine}) == 9
