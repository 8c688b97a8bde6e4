"""Every cluster manifest passes Ray's own validation and ours before anyone spends money on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deploy.checks import (
    check_manifest,
    iam_findings,
    kuberay_findings,
    placeholders,
    security_findings,
    serve_config_findings,
    validate_cluster_yaml,
)
from deploy.options import load_config
from farm.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
CLUSTER_YAMLS = sorted(p for p in (REPO / "deploy" / "cluster").glob("*.yaml") if not p.name.endswith(".cfn.yaml"))  # .cfn: CloudFormation
ALL_CONFIGS = sorted([*REPO.glob("deploy/**/*.yaml"), *REPO.glob("deploy/**/*.json"), *REPO.glob("farm/defaults/*.yaml")])
MANIFESTS = sorted(
    [*REPO.glob("deploy/cluster/*.yaml"), *REPO.glob("deploy/kuberay/*.yaml"), *REPO.glob("deploy/iam/*.json"), REPO / "deploy/serve.yaml"]
)


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
    config["provider"]["security_group"] = {
        "GroupName": "x",
        "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    }
    path = tmp_path / "open.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="0.0.0.0/0 opens a port"):
        validate_cluster_yaml(path)
    del config["provider"]["security_group"]
    del config["available_node_types"]["gpu_g5"]["node_config"]["SecurityGroupIds"]
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(
        ConfigError, match="gpu_g5.node_config: no SecurityGroupIds; Ray would create a default security group that opens SSH"
    ):
        validate_cluster_yaml(path)
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**config, "max_workerz": 3}))
    with pytest.raises(ConfigError, match="not a valid Ray cluster config"):
        validate_cluster_yaml(broken)


def test_kuberay_embeds_the_same_serve_config():
    from ray.serve.schema import ServeDeploySchema

    manifest = next(yaml.safe_load_all((REPO / "deploy/kuberay/rayservice.yaml").read_text()))
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


def test_farm_up_dry_run_and_placeholder_refusal(monkeypatch: pytest.MonkeyPatch):
    """In-process through click (three `farm` processes cost ~10 s of imports on 2 cores)."""
    from click.testing import CliRunner

    from farm.cli import main

    monkeypatch.chdir(REPO)
    monkeypatch.delenv("FARM_API_TOKEN", raising=False)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    args = ["up", "--cluster", "deploy/cluster/aws.yaml", "--farm-config", "deploy/farm.cluster.yaml"]
    no_token = CliRunner().invoke(main, [*args, "--dry-run"])
    assert no_token.exit_code != 0 and "--token-secret" in no_token.stderr
    args += ["--token-secret", "reward-farm/api-token"]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    # a dry run still prints the commands, but placeholders left is a failure, not a success
    assert "$ ray up -y deploy/cluster/aws.yaml" in dry.stdout and "farm serve --config deploy/farm.cluster.yaml" in dry.stdout
    left = len(placeholders(yaml.safe_load((REPO / "deploy/cluster/aws.yaml").read_text())))
    assert dry.exit_code == 1 and f"Error: {left} REPLACE_ME placeholder(s) left in deploy/cluster/aws.yaml (dry run)\n" in dry.stderr
    assert "--host 0.0.0.0 --token-secret reward-farm/api-token --detach" in dry.stdout and "AWS_DEFAULT_REGION=us-east-1" in dry.stdout
    real = CliRunner().invoke(main, args)
    assert real.exit_code == 1 and "REPLACE_ME_PINNED_DLAMI_ID" in real.stderr
    assert placeholders(yaml.safe_load((REPO / "deploy/cluster/aws.yaml").read_text()))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_shipped_manifest_passes_the_checks(path: Path):
    assert check_manifest(path, load_config(REPO / "deploy/farm.cluster.yaml")) == []


def test_the_checks_command_refuses_a_bad_manifest(tmp_path: Path):
    policy = json.loads((REPO / "deploy/iam/bedrock-invoke-policy.json").read_text())
    policy["Statement"][0]["Resource"].append("arn:aws:bedrock:*::foundation-model/*")
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps(policy))
    command = [sys.executable, "-m", "deploy.checks", str(bad), str(REPO / "deploy/serve.yaml")]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and "wildcard resource" in proc.stderr and "serve.yaml: ok" in proc.stderr


def test_wildcard_iam_is_refused_and_models_must_match_the_farm_config():
    policy = json.loads((REPO / "deploy/iam/bedrock-invoke-policy.json").read_text())
    config = load_config(REPO / "deploy/farm.cluster.yaml")
    assert iam_findings(policy, config) == []
    for resource in ("*", "arn:aws:bedrock:*::foundation-model/amazon.nova-*", "arn:aws:secretsmanager:us-east-1:1:secret:*"):
        wild = {"Statement": [{"Effect": "Allow", "Action": "bedrock:InvokeModel", "Resource": resource}]}
        assert any("wildcard resource" in f for f in iam_findings(wild)), resource
    assert any(
        "wildcard action" in f for f in iam_findings({"Statement": [{"Effect": "Allow", "Action": "bedrock:*", "Resource": "arn:x"}]})
    )
    narrower = json.loads(json.dumps(policy))
    narrower["Statement"][0]["Resource"] = narrower["Statement"][0]["Resource"][1:]  # drop nova-micro
    assert any("'amazon.nova-micro-v1:0', which the policy does not grant" in f for f in iam_findings(narrower, config))
    wider = json.loads(json.dumps(policy))
    wider["Statement"][0]["Resource"].append("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0")
    assert any("amazon.nova-pro-v1:0', which no configured judge calls" in f for f in iam_findings(wider, config))


def test_a_security_group_opening_rays_ports_to_a_cidr_is_refused():
    template = yaml.safe_load((REPO / "deploy/cluster/security-group.cfn.yaml").read_text())
    assert security_findings(template) == []
    rules = template["Resources"]["Nodes"]["Properties"]["SecurityGroupIngress"]
    rules.append({"IpProtocol": "tcp", "FromPort": 6379, "ToPort": 6379, "CidrIp": "10.0.0.0/8"})
    rules.append({"IpProtocol": "-1", "CidrIp": "192.168.0.0/16"})
    findings = security_findings(template)
    assert any("6379 (GCS)" in f for f in findings) and any("8265 (dashboard)" in f and "10002-19999" in f for f in findings)


def test_serve_config_beyond_loopback_needs_auth():
    config = yaml.safe_load((REPO / "deploy/serve.yaml").read_text())
    assert config["http_options"]["host"] == "127.0.0.1" and serve_config_findings(config) == []
    config["http_options"]["host"] = "0.0.0.0"
    assert "without auth" in serve_config_findings(config)[0]
    config["applications"][0]["args"]["auth"] = {"token": {"file": "/etc/farm-secrets/token"}}
    assert serve_config_findings(config) == []
    del config["http_options"]["host"]  # Serve's own default binds every interface
    config["applications"][0]["args"].pop("auth")
    assert serve_config_findings(config)
    config["applications"][0]["deployments"] = [
        {"name": "ingress", "ray_actor_options": {"runtime_env": {"env_vars": {"FARM_API_TOKEN": "x" * 20}}}}
    ]
    assert any("API token" in f for f in security_findings(config))


def test_kuberay_without_network_policy_or_with_an_open_one_is_refused():
    documents = list(yaml.safe_load_all((REPO / "deploy/kuberay/rayservice.yaml").read_text()))
    assert kuberay_findings(documents) == []
    service, policy = documents
    assert any("behind no NetworkPolicy" in f for f in kuberay_findings([service]))
    opened = json.loads(json.dumps(policy))
    opened["spec"]["ingress"].append({"from": [{"namespaceSelector": {}}]})
    assert any("admits pods outside the farm to every port" in f for f in kuberay_findings([service, opened]))
    opened["spec"]["ingress"][-1] = {"ports": [{"port": 6379}]}
    assert any("no `from`" in f for f in kuberay_findings([service, opened]))
    public = json.loads(json.dumps(service))
    public["spec"]["rayClusterConfig"]["headGroupSpec"]["serviceType"] = "LoadBalancer"
    assert any("LoadBalancer exposes" in f for f in kuberay_findings([public, policy]))
    no_auth = json.loads(json.dumps(service))
    no_auth["spec"]["serveConfigV2"] = (
        no_auth["spec"]["serveConfigV2"].replace("auth:", "unused:").replace("token: {file", "# token: {file")
    )
    no_auth["spec"]["serveConfigV2"] = "\n".join(
        line for line in no_auth["spec"]["serveConfigV2"].splitlines() if "unused" not in line and "# token" not in line
    )
    assert any("without auth" in f for f in kuberay_findings([no_auth, policy]))
    env = json.loads(json.dumps(service))
    env["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "FARM_API_TOKEN", "value": "x"}
    )
    assert any("API token" in f for f in security_findings(env))


@pytest.mark.parametrize(
    "source",
    [
        {"podSelector": {}},  # every pod in the namespace
        {"podSelector": {"matchLabels": {}}},
        {"podSelector": {"matchExpressions": [{"key": "app.kubernetes.io/part-of", "operator": "Exists"}]}},
        {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/part-of": "reward-farm"},
                "matchExpressions": [{"key": "x", "operator": "DoesNotExist"}],
            }
        },
        {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "reward-farm"}}, "namespaceSelector": {}},
        {"podSelector": {"matchLabels": {"app": "someone-else"}}},
    ],
    ids=["empty", "empty-labels", "expressions-only", "labels-and-expressions", "any-namespace", "other-pods"],
)
def test_only_a_labelled_pod_selector_counts_as_the_farms_own_pods(source: dict):
    documents = list(yaml.safe_load_all((REPO / "deploy/kuberay/rayservice.yaml").read_text()))
    service, policy = documents
    opened = json.loads(json.dumps(policy))
    opened["spec"]["ingress"] = [{"from": [source]}]
    assert any("admits pods outside the farm to every port" in f for f in kuberay_findings([service, opened]))


@pytest.mark.parametrize(
    ("source", "refused"),
    [
        ({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ray-system"}}}, False),
        (
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ray-system"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}},
            },
            False,
        ),
        ({"namespaceSelector": {}}, True),  # every namespace
        ({"namespaceSelector": {"matchLabels": {"reward-farm/client": "true"}}}, True),  # the clients' namespaces
        ({"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "Exists"}]}}, True),
        ({"podSelector": {}}, True),
        ({"ipBlock": {"cidr": "10.0.0.0/8"}}, True),
    ],
    ids=["operator-ns", "operator-pods", "every-ns", "client-ns", "expressions", "every-pod", "ip-block"],
)
def test_the_dashboard_is_admitted_only_from_one_named_namespace(source: dict, refused: bool):
    documents = list(yaml.safe_load_all((REPO / "deploy/kuberay/rayservice.yaml").read_text()))
    service, policy = documents
    changed = json.loads(json.dumps(policy))
    changed["spec"]["ingress"][1]["from"] = [source]  # the shipped rule for 8265 and 52365
    assert changed["spec"]["ingress"][1]["ports"] == [{"protocol": "TCP", "port": 8265}, {"protocol": "TCP", "port": 52365}]
    findings = kuberay_findings([service, changed])
    assert any("8265, 52365 (the dashboard runs jobs)" in f for f in findings) is refused, findings
    serve_only = json.loads(json.dumps(changed))
    serve_only["spec"]["ingress"][1]["ports"] = [{"port": 8000}]  # Serve is behind auth: any source may reach it
    assert kuberay_findings([service, serve_only]) == []


def test_a_token_variable_from_a_secret_passes_a_literal_one_does_not():
    documents = list(yaml.safe_load_all((REPO / "deploy/kuberay/rayservice.yaml").read_text()))
    client = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "trainer", "env": []}]}}
    env = client["spec"]["containers"][0]["env"]
    env.append({"name": "FARM_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "reward-farm-token", "key": "token"}}})
    assert security_findings(client) == [] and security_findings(documents[0]) == []
    env.append({"name": "FARM_API_TOKEN", "value": "y" * 20})
    assert [f for f in security_findings(client) if "API token" in f] and all("env[1]" in f for f in security_findings(client))


def test_serve_config_accepts_auth_from_the_farm_config(tmp_path: Path):
    config = yaml.safe_load((REPO / "deploy/serve.yaml").read_text())
    config["http_options"]["host"] = "0.0.0.0"
    args = config["applications"][0]["args"]
    args.pop("auth", None)
    args.pop("config_path", None)
    secured = {"judges": [{"name": "a", "kind": "final_answer"}], "serve": {"auth": {"token": {"file": "/etc/farm-secrets/t"}}}}
    args["config"] = secured
    assert serve_config_findings(config) == []
    args["config"] = {"judges": secured["judges"]}  # the farm config has no serve.auth
    assert "without auth" in serve_config_findings(config)[0]
    del args["config"]
    (tmp_path / "farm.yaml").write_text(yaml.safe_dump(secured))
    args["config_path"] = str(tmp_path / "farm.yaml")
    assert serve_config_findings(config) == []
    args["config_path"] = "farm.yaml"  # relative: found beside the manifest
    assert serve_config_findings(config, base=tmp_path) == []
    assert "without auth" in serve_config_findings(config)[0]  # cannot be read from here: not counted
    args["auth"] = {}  # args.auth replaces the farm config's serve.auth, as deploy.app does
    assert "without auth" in serve_config_findings(config, base=tmp_path)[0]
    manifest = tmp_path / "serve.yaml"
    del args["auth"]
    manifest.write_text(yaml.safe_dump(config))
    assert check_manifest(manifest) == []
