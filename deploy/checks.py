"""Checks a deployment manifest must pass before it costs money or exposes the farm.

- every manifest: no inbound rule open to the world, no dashboard bound to every interface by a
  command line, no credential or API token written into it, no placeholder left (for `farm up`);
- Ray cluster YAMLs: Ray's own `prepare_config` + `validate_config`; every node names its security
  group (else Ray's default group opens SSH to 0.0.0.0/0); no rule admits a CIDR to Ray's ports;
- security groups (CloudFormation): Ray's ports only from the group itself;
- Serve configs (also KubeRay's `serveConfigV2`): Ray's `ServeDeploySchema`; a proxy beyond loopback
  only with auth (`args.auth`, or `serve.auth` in the farm config of `args.config` / `args.config_path`);
- KubeRay: the head Service is not public, and a NetworkPolicy selects every Ray pod, admits Ray's
  ports only from the farm's own pods (a non-empty `matchLabels` podSelector, nothing wider), the
  dashboard and its agent also from one named namespace (the operator's), and only Serve beyond that;
- IAM policies: no wildcard action or resource; with a farm config, exactly its models.

`python -m deploy.checks FILE... [--farm-config deploy/farm.cluster.yaml]` exits 1 on any finding.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from farm.errors import ConfigError

__all__ = [
    "RAY_PORTS",
    "check_manifest",
    "iam_findings",
    "kuberay_findings",
    "main",
    "placeholders",
    "security_findings",
    "serve_config_findings",
    "validate_cluster_yaml",
]

_OPEN_CIDRS = ("0.0.0.0/0", "::/0")
_SECRETS = (
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"(?i)aws_secret_access_key\s*[:=]"), "an AWS secret access key"),
    (re.compile(r"(?i)aws_session_token\s*[:=]"), "an AWS session token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"(?i)FARM_API_TOKEN\s*[:=]\s*\S+"), "the farm's API token"),
    (re.compile(r"(?i)\bpassword\s*[:=]\s*\S+"), "a password"),
)
RAY_PORTS = {6379: "GCS", 8265: "dashboard", 10001: "Ray client", 52365: "dashboard agent", 8076: "object manager", 8077: "raylet"}
"""Ray's fixed ports; workers also listen on 10002-19999."""
_SERVE_PORT = 8000
_KUBERAY_PUBLIC_PORTS = {_SERVE_PORT, 8265, 52365}  # Serve; the dashboard and agent the operator calls
_OPERATOR_PORTS = {8265, 52365}
"""The dashboard (job submission: running code) and its agent: only from the operator's namespace."""
_NAMESPACE_LABEL = "kubernetes.io/metadata.name"
_TOKEN_VARIABLE = "FARM_API_TOKEN"


def _strings(node: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
            yield path, str(key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}[{index}]")
    elif isinstance(node, str):
        yield path, node


def _nodes(node: Any, path: str = "$") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _nodes(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _nodes(value, f"{path}[{index}]")


def security_findings(config: Any) -> list[str]:
    """What in any config (a parsed YAML/JSON document) would expose the cluster or leak a secret."""
    findings = []
    for where, text in _strings(config):
        for cidr in _OPEN_CIDRS:
            if cidr in text:
                findings.append(f"{where}: {cidr} opens a port to the whole internet")
        if re.search(r"--dashboard-host[= ]0\.0\.0\.0", text):
            findings.append(f"{where}: the dashboard listens on every interface; use 127.0.0.1 and `ray dashboard`")
        for pattern, what in _SECRETS:
            if pattern.search(text.strip()):
                findings.append(f"{where}: looks like {what}; use an instance profile, a mounted secret or a secret store")
    findings += _rule_findings(config)
    findings += _token_variable_findings(config)
    return findings


def _token_variable_findings(config: Any) -> list[str]:
    """`FARM_API_TOKEN` given a literal value: a Kubernetes `env` entry with `value:` or a mapping key
    (`env_vars`). A `valueFrom: {secretKeyRef: ...}` is how a client should get it, so it passes."""
    findings = []
    for where, node in _nodes(config):
        literal = node.get("name") == _TOKEN_VARIABLE and "value" in node
        if literal or (_TOKEN_VARIABLE in node and not isinstance(node[_TOKEN_VARIABLE], dict)):
            findings.append(
                f"{where}: looks like the farm's API token written into the manifest; "
                "use a mounted secret, a secret store or `valueFrom: {secretKeyRef: ...}`"
            )
    return findings


def _rule_findings(config: Any) -> list[str]:
    """Security-group rules (Ray's IpPermissions or CloudFormation's ingress) that admit a CIDR to Ray's ports."""
    findings = []
    for where, rule in _nodes(config):
        if "IpProtocol" not in rule:
            continue
        cidrs = [rule[k] for k in ("CidrIp", "CidrIpv6") if k in rule]
        cidrs += [r.get("CidrIp", r.get("CidrIpv6")) for r in rule.get("IpRanges", []) + rule.get("Ipv6Ranges", []) if isinstance(r, dict)]
        if not cidrs:
            continue  # from a security group: the cluster's own nodes or the trainers'
        low, high = _port_range(rule)
        exposed = [f"{port} ({name})" for port, name in RAY_PORTS.items() if low <= port <= high]
        if low <= 10002 and high >= 19999:
            exposed.append("10002-19999 (workers)")
        if exposed:
            findings.append(
                f"{where}: admits a CIDR to Ray's ports {', '.join(exposed)}; only the cluster's own security group may reach them"
            )
    return findings


def _port_range(rule: dict[str, Any]) -> tuple[int, int]:
    if str(rule.get("IpProtocol")) == "-1":
        return 0, 65535
    try:
        return int(rule.get("FromPort", 0)), int(rule.get("ToPort", 65535))
    except (TypeError, ValueError):
        return 0, 65535


def placeholders(config: Any) -> list[str]:
    return sorted({f"{where}: {text}" for where, text in _strings(config) if "REPLACE_ME" in text})


def _cluster_findings(raw: dict[str, Any]) -> list[str]:
    findings = []
    if raw.get("provider", {}).get("type") == "aws":
        for name, node_type in raw.get("available_node_types", {}).items():
            if not node_type.get("node_config", {}).get("SecurityGroupIds"):
                findings.append(
                    f"$.available_node_types.{name}.node_config: no SecurityGroupIds; Ray would create a default "
                    "security group that opens SSH to 0.0.0.0/0 (use deploy/cluster/security-group.cfn.yaml)"
                )
    return findings


def validate_cluster_yaml(path: str | Path) -> dict[str, Any]:
    """Ray's `prepare_config` + `validate_config`, then our security checks; the prepared config."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read cluster config {path}: {exc}") from None
    try:
        prepared = prepare_config(copy.deepcopy(raw))
        validate_config(prepared)
    except Exception as exc:  # noqa: BLE001 - Ray raises ValueError, jsonschema's ValidationError or a KeyError on a bad file
        raise ConfigError(f"{path} is not a valid Ray cluster config: {exc}") from None
    findings = security_findings(raw) + _cluster_findings(raw)
    if findings:
        raise ConfigError(f"{path} is unsafe:\n" + "\n".join(f"  - {f}" for f in findings))
    return prepared


def serve_config_findings(
    config: dict[str, Any], *, proxy_host: str | None = None, where: str = "$", base: Path | None = None
) -> list[str]:
    """A Serve config: valid for Ray, and a proxy beyond loopback only in front of apps with auth:
    `args.auth`, or else `serve.auth` in the farm config (`args.config`, or `args.config_path` when it
    can be read here, relative to the working directory or `base`).

    `proxy_host` overrides `http_options.host` (KubeRay binds the proxy to every interface of the pod)."""
    from ray.serve.schema import ServeDeploySchema

    from farm.auth import is_loopback

    try:
        schema = ServeDeploySchema.model_validate(config)
    except ValidationError as exc:  # with every field named
        return [f"{where}: not a valid Serve config: {exc}"]
    host = proxy_host or schema.http_options.host
    if is_loopback(host):
        return []
    findings = []
    for app in schema.applications:
        args = app.args or {}
        if not _has_auth(args, base) and not args.get("insecure"):
            findings.append(
                f"{where}: application {app.name!r} is served on {host} without auth; set args.auth.token "
                "or serve.auth.token in its farm config (a mounted file or a secret's name), or bind 127.0.0.1"
            )
    return findings


def _has_auth(args: dict[str, Any], base: Path | None) -> bool:
    """Whether the app deploys with auth, as `deploy.app` resolves it: `args.auth` replaces the farm
    config's `serve.auth`. A config path that cannot be read here counts as no auth."""
    from pydantic import ValidationError

    from farm.auth import AuthConfig

    if args.get("auth") is not None:
        raw = args["auth"]
    else:
        farm = args.get("config") if args.get("config") is not None else _read_farm_config(args.get("config_path"), base)
        serve = farm.get("serve") if isinstance(farm, dict) else None
        raw = serve.get("auth") if isinstance(serve, dict) else None
    if not isinstance(raw, dict):
        return False
    try:
        return AuthConfig.model_validate(raw).enabled
    except ValidationError:
        return False


def _read_farm_config(path: Any, base: Path | None) -> Any:
    if not isinstance(path, str) or not path:
        return None
    for candidate in (Path(path), *((base / path,) if base is not None else ())):
        try:
            return yaml.safe_load(candidate.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
    return None


def kuberay_findings(documents: list[Any]) -> list[str]:
    """A KubeRay manifest: private head Service, every Ray pod behind a NetworkPolicy, auth on Serve."""
    findings: list[str] = []
    policies = [d for d in documents if isinstance(d, dict) and d.get("kind") == "NetworkPolicy"]
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") not in ("RayService", "RayCluster"):
            continue
        name = doc.get("metadata", {}).get("name", "?")
        cluster = doc["spec"].get("rayClusterConfig", {}) if doc["kind"] == "RayService" else doc["spec"]
        if doc["kind"] == "RayService":
            try:
                serve_config = yaml.safe_load(doc["spec"].get("serveConfigV2") or "{}")
            except yaml.YAMLError as exc:
                findings.append(f"{name}: serveConfigV2 is not YAML: {exc}")
            else:
                findings += serve_config_findings(serve_config, proxy_host="0.0.0.0", where=f"{name}.serveConfigV2")
        head = cluster.get("headGroupSpec", {})
        if head.get("serviceType") in ("LoadBalancer", "NodePort"):
            findings.append(f"{name}: headGroupSpec.serviceType {head['serviceType']} exposes Ray's head ports; use ClusterIP")
        groups = [("head", head), *((g.get("groupName", "?"), g) for g in cluster.get("workerGroupSpecs", []))]
        for group, spec in groups:
            labels = spec.get("template", {}).get("metadata", {}).get("labels", {}) or {}
            covering = [p for p in policies if _selects(p, labels)]
            if not covering:
                findings.append(f"{name}: pods of group {group!r} are behind no NetworkPolicy; Ray's ports are open to every pod")
            for policy in covering:
                findings += _policy_findings(policy, labels)
    return findings


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    spec = policy.get("spec", {})
    wanted = spec.get("podSelector", {}).get("matchLabels", {}) or {}
    return bool(wanted) and "Ingress" in spec.get("policyTypes", ["Ingress"]) and all(labels.get(k) == v for k, v in wanted.items())


def _policy_findings(policy: dict[str, Any], own_labels: dict[str, str]) -> list[str]:
    name = policy.get("metadata", {}).get("name", "?")
    findings = []
    for index, rule in enumerate(policy.get("spec", {}).get("ingress", []) or []):
        where = f"NetworkPolicy {name}.ingress[{index}]"
        sources = rule.get("from")
        if not sources:
            findings.append(f"{where}: no `from`: admits every source")
            continue
        if all(_is_own(s, own_labels) for s in sources):
            continue  # Ray's own traffic between the farm's pods
        ports = {p.get("port") for p in rule.get("ports", []) or []}
        if not ports or not ports <= _KUBERAY_PUBLIC_PORTS:
            shown = sorted(map(str, ports)) or ["every port"]
            findings.append(f"{where}: admits pods outside the farm to {', '.join(shown)}; only {sorted(_KUBERAY_PUBLIC_PORTS)} may be")
            continue
        dashboard = [str(p) for p in sorted(ports & _OPERATOR_PORTS)]
        if dashboard and not all(_is_own(s, own_labels) or _names_one_namespace(s) for s in sources):
            findings.append(
                f"{where}: admits sources beyond one named namespace to {', '.join(dashboard)} (the dashboard runs "
                f"jobs); admit them only from a namespaceSelector with matchLabels {{{_NAMESPACE_LABEL}: <operator namespace>}}"
            )
    return findings


def _is_own(source: Any, own_labels: dict[str, str]) -> bool:
    """A source of the farm's own pods: only a podSelector, only a non-empty `matchLabels` that the
    farm's pods carry. `{}` (every pod in the namespace) and `matchExpressions` are not."""
    if not isinstance(source, dict) or set(source) != {"podSelector"} or not isinstance(source["podSelector"], dict):
        return False
    selector = source["podSelector"]
    labels = selector.get("matchLabels")
    if set(selector) != {"matchLabels"} or not isinstance(labels, dict) or not labels:
        return False
    return all(own_labels.get(k) == v for k, v in labels.items())


def _names_one_namespace(source: Any) -> bool:
    """A source confined to one namespace by name (and optionally some of its pods), no `ipBlock`."""
    if not isinstance(source, dict) or "ipBlock" in source or not isinstance(source.get("namespaceSelector"), dict):
        return False
    selector = source["namespaceSelector"]
    labels = selector.get("matchLabels")
    return set(selector) == {"matchLabels"} and isinstance(labels, dict) and bool(labels.get(_NAMESPACE_LABEL))


_BEDROCK_ARN = re.compile(r"^arn:aws:bedrock:([a-z0-9-]+):(\w*|REPLACE_ME_ACCOUNT_ID):(foundation-model|inference-profile)/(.+)$")
_GEO_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")


def iam_findings(policy: dict[str, Any], farm_config: Any = None) -> list[str]:
    """Least privilege: no wildcard action or resource (a Secrets Manager ARN may end in `-??????`,
    its random suffix); with a farm config, Bedrock resources are exactly its models and profiles."""
    findings = []
    granted: set[tuple[str, str]] = set()
    statements = policy.get("Statement", [])
    for index, statement in enumerate(statements if isinstance(statements, list) else [statements]):
        where = f"Statement[{index}] ({statement.get('Sid', 'no Sid')})"
        if statement.get("Effect") != "Allow":
            continue
        for key in ("NotAction", "NotResource"):
            if key in statement:
                findings.append(f"{where}: {key} grants everything not listed")
        actions = statement.get("Action", [])
        for action in [actions] if isinstance(actions, str) else actions:
            if "*" in action or "?" in action:
                findings.append(f"{where}: wildcard action {action!r}")
        resources = statement.get("Resource", [])
        for resource in [resources] if isinstance(resources, str) else resources:
            bare = re.sub(r"-\?{6}$", "", resource) if resource.startswith("arn:aws:secretsmanager:") else resource
            if "*" in bare or "?" in bare:
                findings.append(f"{where}: wildcard resource {resource!r}; name each model ARN and inference profile")
                continue
            match = _BEDROCK_ARN.match(resource)
            if match:
                granted.add((match.group(3), match.group(4)))
    if farm_config is not None:
        findings += _model_coverage(farm_config, granted)
    return findings


def _model_coverage(config: Any, granted: set[tuple[str, str]]) -> list[str]:
    from farm.judges import needs_bedrock

    needed: set[tuple[str, str]] = set()
    for judge in config.judges:
        model = getattr(judge, "model", None)
        if not needs_bedrock(judge) or not model:
            continue
        if model.startswith(_GEO_PREFIXES):
            needed |= {("inference-profile", model), ("foundation-model", model.split(".", 1)[1])}
        else:
            needed.add(("foundation-model", model))
    findings = [
        f"the farm config's judges call {kind} {model!r}, which the policy does not grant" for kind, model in sorted(needed - granted)
    ]
    findings += [f"the policy grants {kind} {model!r}, which no configured judge calls" for kind, model in sorted(granted - needed)]
    return findings


def check_manifest(path: str | Path, farm_config: Any = None) -> list[str]:
    """Every finding for one manifest file, whatever kind it is (cluster, Serve, KubeRay, IAM, CloudFormation)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        documents = [json.loads(text)] if path.suffix == ".json" else [d for d in yaml.safe_load_all(text) if d is not None]
    except (OSError, ValueError, yaml.YAMLError) as exc:
        return [f"cannot read {path}: {exc}"]
    findings = [f for d in documents for f in security_findings(d)]
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        if "available_node_types" in doc and "provider" in doc:
            try:
                validate_cluster_yaml(path)
            except ConfigError as exc:
                findings.append(str(exc))
        elif "applications" in doc:
            findings += serve_config_findings(doc, base=path.parent)
        elif "Statement" in doc:
            findings += iam_findings(doc, farm_config)
    if any(isinstance(d, dict) and d.get("kind") in ("RayService", "RayCluster") for d in documents):
        findings += kuberay_findings(documents)
    return list(dict.fromkeys(findings))


def main(argv: list[str] | None = None) -> int:
    """`python -m deploy.checks FILE... [--farm-config FARM.yaml]`: findings to stderr, exit 1 on any."""
    import argparse

    from deploy.options import load_config

    parser = argparse.ArgumentParser(prog="python -m deploy.checks", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--farm-config", help="check IAM policies against this farm config's models")
    args = parser.parse_args(argv)
    farm_config = load_config(args.farm_config) if args.farm_config else None
    failed = 0
    for path in args.paths:
        findings = check_manifest(path, farm_config)
        for finding in findings:
            print(f"{path}: {finding}", file=sys.stderr)
        failed += bool(findings)
        print(f"{path}: {'REFUSED' if findings else 'ok'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
