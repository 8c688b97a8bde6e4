"""Every cluster manifest passes Ray's own validation and ours before anyone spends money on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.checks import placeholders, security_findings, validate_cluster_yaml
from farm.config import load_config
from farm.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAMLS = sorted((REPO / "deploy" / "cluster").glob("*.yaml"))
ALL_CONFIGS = sorted([*REPO.glob("deploy/**/*.yaml"), *REPO.glob("deploy/**/*.json"), *REPO.glob("farm/defaults/*.yaml")])


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_cluster_yaml_passes_rays_prepare_and_validate(path: Path):
    prepared = validate_cluster_yaml(path)
    types = prepared["available_node_types"]
    assert types[prepared["head_node_type"]]["resources"]["CPU"] == 0  # no judge work on the head
    gpu_types = [name for name, spec in types.items() if spec["resources"].get("GPU")]
    assert gpu_types and any(types[t]["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot" for t in gpu_types)
    for spec in types.values():
        assert spec["node_config"].get("IamInstanceProfile")  # Bedrock access through an instance profile
    assert any("ray[default,serve,data]==2.60.0" in c for c in prepared["setup_commands"])


def test_cluster_yaml_list_is_not_empty():
    assert CLUSTER_YAMLS


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_no_config_opens_a_port_to_the_world_or_holds_a_credential(path: Path):
    document = json.loads(path.read_text()) if path.suffix == ".json" else list(yaml.safe_load_all(path.read_text()))
    assert security_findings(document) == []


@pytest.mark.parametrize(
    ("bad", "finding"),
    [
        ({"provider": {"security_group": {"IpPermissions": [{"IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}}}, "whole internet"),
        ({"IpRanges": [{"CidrIpv6": "::/0"}]}, "whole internet"),
        ({"head_start_ray_commands": ["ray start --head --dashboard-host=0.0.0.0"]}, "every interface"),
        ({"setup_commands": ["export AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP"]}, "access key id"),
        ({"env": "aws_secret_access_key = abc"}, "secret access key"),
        ({"env": [{"name": "x", "value": "FARM_API_TOKEN=hunter2"}]}, "API token"),
    ],
)
def test_the_security_check_can_fail(bad, finding):
    findings = security_findings(bad)
    assert findings and finding in findings[0]


def test_unsafe_cluster_yaml_is_refused(tmp_path: Path):
    config = yaml.safe_load((REPO / "deploy/cluster/aws.yaml").read_text())
    config["provider"]["security_group"]["IpPermissions"][0]["IpRanges"][0]["CidrIp"] = "0.0.0.0/0"
    path = tmp_path / "open.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="0.0.0.0/0 opens a port"):
        validate_cluster_yaml(path)
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**config, "max_workerz": 3}))
    with pytest.raises(ConfigError, match="not a valid Ray cluster config"):
        validate_cluster_yaml(broken)


def test_kuberay_embeds_the_same_serve_config():
    from ray.serve.schema import ServeDeploySchema

    manifest = yaml.safe_load((REPO / "deploy/kuberay/rayservice.yaml").read_text())
    assert manifest["kind"] == "RayService" and manifest["apiVersion"] == "ray.io/v1"
    embedded = ServeDeploySchema.model_validate(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    standalone = ServeDeploySchema.model_validate(yaml.safe_load((REPO / "deploy/serve.yaml").read_text()))
    assert [(a.name, a.import_path, a.route_prefix) for a in embedded.applications] == [
        (a.name, a.import_path, a.route_prefix) for a in standalone.applications
    ]
    cluster = manifest["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] and cluster["rayVersion"] == "2.60.0"
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    gpu = [g for g in cluster["workerGroupSpecs"] if "nvidia.com/gpu" in str(g)]
    assert gpu and gpu[0]["minReplicas"] == 0 and gpu[0]["maxReplicas"] >= 1


def test_cluster_farm_config_autoscaling_is_accepted_by_serve():
    from ray.serve.config import AutoscalingConfig

    config = load_config(REPO / "deploy/farm.cluster.yaml")
    scaled = [j for j in config.judges if j.deployment.autoscaling] + [config.serve.ingress]
    assert len(scaled) >= 4
    for item in scaled:
        options = item.deployment.autoscaling if hasattr(item, "deployment") else item.autoscaling
        AutoscalingConfig(**options.model_dump(exclude_none=True))
    gpu = [j for j in config.judges if j.deployment.num_gpus]
    assert gpu and gpu[0].deployment.autoscaling.target_ongoing_requests >= gpu[0].max_batch_size


def test_farm_up_dry_run_and_placeholder_refusal():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    args = [sys.executable, "-m", "farm.cli", "up", "--cluster", "deploy/cluster/aws.yaml", "--farm-config", "deploy/farm.cluster.yaml"]
    dry = subprocess.run([*args, "--dry-run"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    # a dry run still prints the commands, but placeholders left is a failure, not a success
    assert "$ ray up -y deploy/cluster/aws.yaml" in dry.stdout and "farm serve --config deploy/farm.cluster.yaml" in dry.stdout
    left = len(placeholders(yaml.safe_load((REPO / "deploy/cluster/aws.yaml").read_text())))
    assert dry.returncode == 1 and f"Error: {left} REPLACE_ME placeholder(s) left in deploy/cluster/aws.yaml (dry run)\n" in dry.stderr
    real = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert real.returncode == 1 and "REPLACE_ME_PINNED_DLAMI_ID" in real.stderr
    assert placeholders(yaml.safe_load((REPO / "deploy/cluster/aws.yaml").read_text()))
