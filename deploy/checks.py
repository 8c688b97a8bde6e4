"""Checks a cluster config must pass before it costs money: Ray's own validation, and ours.

Ours: no inbound rule open to the world, no dashboard bound to every interface, no credential
written into a config, and no placeholder left unreplaced.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from farm.errors import ConfigError

__all__ = ["placeholders", "security_findings", "validate_cluster_yaml"]

_OPEN_CIDRS = ("0.0.0.0/0", "::/0")
_SECRETS = (
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"(?i)aws_secret_access_key\s*[:=]"), "an AWS secret access key"),
    (re.compile(r"(?i)aws_session_token\s*[:=]"), "an AWS session token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"(?i)FARM_API_TOKEN\s*[:=]\s*\S+"), "the farm's API token"),
    (re.compile(r"(?i)\bpassword\s*[:=]\s*\S+"), "a password"),
)


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


def security_findings(config: Any) -> list[str]:
    """What in a config (a parsed YAML/JSON document) would expose the cluster."""
    findings = []
    for where, text in _strings(config):
        for cidr in _OPEN_CIDRS:
            if cidr in text:
                findings.append(f"{where}: {cidr} opens a port to the whole internet")
        if re.search(r"--dashboard-host[= ]0\.0\.0\.0", text):
            findings.append(f"{where}: the dashboard listens on every interface; use 127.0.0.1 and `ray dashboard`")
        for pattern, what in _SECRETS:
            if pattern.search(text):
                findings.append(f"{where}: looks like {what}; use an instance profile or a secret store")
    return findings


def placeholders(config: Any) -> list[str]:
    return sorted({f"{where}: {text}" for where, text in _strings(config) if "REPLACE_ME" in text})


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
    except Exception as exc:  # Ray raises ValueError or jsonschema's ValidationError
        raise ConfigError(f"{path} is not a valid Ray cluster config: {exc}") from None
    findings = security_findings(raw)
    if findings:
        raise ConfigError(f"{path} is unsafe:\n" + "\n".join(f"  - {f}" for f in findings))
    return prepared
