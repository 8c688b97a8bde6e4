"""The embedded default: with no AWS credentials, start the emulator and point botocore at it.

Which backend runs is decided once, loudly, by `FARM_BACKEND` (`auto`, `bedrock`, `emulator`):
`auto` uses Bedrock when credentials are configured in the environment or in AWS config files,
or when `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` already names an endpoint; otherwise the emulator.
`auto` never probes the EC2 instance metadata service: on an instance whose only credentials
are its instance profile, set `FARM_BACKEND=bedrock` (the cluster YAMLs do).
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Literal

from farm.config import FarmConfig
from farm.errors import ConfigError

__all__ = ["Backend", "choose_backend", "start_embedded_emulator"]

Backend = Literal["bedrock", "emulator"]

_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)
ENDPOINT_VAR = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"


def choose_backend(environ: MutableMapping[str, str] | None = None) -> Backend:
    env = os.environ if environ is None else environ
    choice = env.get("FARM_BACKEND", "auto").strip().lower()
    if choice in ("bedrock", "emulator"):
        return choice  # type: ignore[return-value]
    if choice != "auto":
        raise ConfigError(f"FARM_BACKEND must be 'auto', 'bedrock' or 'emulator', got {choice!r}")
    if env.get(ENDPOINT_VAR) or any(env.get(name) for name in _CREDENTIAL_VARS):
        return "bedrock"
    home = Path(env.get("HOME", "~")).expanduser()
    files = [Path(env["AWS_SHARED_CREDENTIALS_FILE"])] if env.get("AWS_SHARED_CREDENTIALS_FILE") else [home / ".aws" / "credentials"]
    files.append(Path(env["AWS_CONFIG_FILE"]) if env.get("AWS_CONFIG_FILE") else home / ".aws" / "config")
    for path in files:
        try:
            if "aws_access_key_id" in path.read_text(encoding="utf-8", errors="replace") or "sso_" in path.read_text(
                encoding="utf-8", errors="replace"
            ):
                return "bedrock"
        except OSError:
            continue
    return "emulator"


def start_embedded_emulator(config: FarmConfig, environ: MutableMapping[str, str] | None = None):  # noqa: ANN201
    """Start an emulator thread sized by `config.emulator` and point this process's botocore at it.

    Returns the running `EmulatorThread`; stop it when done.
    """
    from farm.emulator import EmulatorSettings, EmulatorThread

    env = os.environ if environ is None else environ
    settings = EmulatorSettings(rpm=config.emulator.rpm, tpm=config.emulator.tpm, latency_ms=config.emulator.latency_ms)
    emulator = EmulatorThread(settings)
    url = emulator.start()
    env[ENDPOINT_VAR] = url
    env.setdefault("AWS_ACCESS_KEY_ID", "emulator")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "emulator")
    env.setdefault("AWS_DEFAULT_REGION", config.bedrock.region)
    bar = "=" * 78
    print(
        f"{bar}\n  NO AWS CREDENTIALS FOUND: judging with the Bedrock EMULATOR at {url}\n"
        "  Scores come from a simulated judge, not from Amazon Nova. Configure AWS credentials\n"
        f"  (or set FARM_BACKEND=bedrock) to use Bedrock.\n{bar}",
        file=sys.stderr,
        flush=True,
    )
    return emulator
