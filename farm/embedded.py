"""The embedded default: with no AWS credentials, start the emulator and point botocore at it.

Which backend runs is decided once, loudly, by `FARM_BACKEND` (`auto`, `bedrock`, `emulator`):
`auto` uses Bedrock when credentials are configured in the environment or in AWS config files,
or when `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` already names an endpoint; otherwise the emulator.
`auto` never probes the EC2 instance metadata service: on an instance whose only credentials
are its instance profile, set `FARM_BACKEND=bedrock` (the cluster YAMLs do).

Every command says in one line which backend and endpoint it judges with and where its config
came from (`describe_backend`), and the Python API (`embedded_ensemble`, or `prepare_backend`
before `Ensemble.from_config`) warns once when it falls back to the emulator or would call
Bedrock without credentials, so a run never degrades silently. `Ensemble.from_config` itself
never starts an emulator: the backend is chosen here, by the callers that want it.
"""

from __future__ import annotations

import atexit
import os
import threading
import warnings
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from farm.config import ENV_PREFIX, FarmConfig
from farm.errors import ConfigError

if TYPE_CHECKING:
    from farm.ensemble import Ensemble
    from farm.ratelimit import QuotaBackend

__all__ = [
    "Backend",
    "ENDPOINT_VAR",
    "choose_backend",
    "credentials_source",
    "describe_backend",
    "embedded_ensemble",
    "prepare_backend",
    "start_embedded_emulator",
]

Backend = Literal["bedrock", "emulator"]

_CREDENTIAL_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)
ENDPOINT_VAR = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"
_EMULATOR_NOTE = "scores come from a simulated judge, not from Amazon Nova; configure AWS credentials or set FARM_BACKEND=bedrock"


def choose_backend(environ: MutableMapping[str, str] | None = None) -> Backend:
    env = os.environ if environ is None else environ
    choice = env.get("FARM_BACKEND", "auto").strip().lower()
    if choice in ("bedrock", "emulator"):
        return choice  # type: ignore[return-value]
    if choice != "auto":
        raise ConfigError(f"FARM_BACKEND must be 'auto', 'bedrock' or 'emulator', got {choice!r}")
    if env.get(ENDPOINT_VAR) or credentials_source(env):
        return "bedrock"
    return "emulator"


def credentials_source(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Where AWS credentials would come from (without asking the instance metadata service), or None."""
    env = os.environ if environ is None else environ
    for name in _CREDENTIAL_VARS:
        if env.get(name):
            return f"{name} in the environment"
    home = Path(env.get("HOME", "~")).expanduser()
    files = [Path(env["AWS_SHARED_CREDENTIALS_FILE"])] if env.get("AWS_SHARED_CREDENTIALS_FILE") else [home / ".aws" / "credentials"]
    files.append(Path(env["AWS_CONFIG_FILE"]) if env.get("AWS_CONFIG_FILE") else home / ".aws" / "config")
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if "aws_access_key_id" in text or "sso_" in text:
            return str(path)
    return None


def describe_backend(
    config: FarmConfig, config_source: str, environ: MutableMapping[str, str] | None = None, *, embedded: bool = False
) -> str:
    """One line: which backend and endpoint the Bedrock judges use, why, and where the config came from.

    `embedded`: the endpoint in the environment is the emulator this process started.
    """
    from farm.judges import needs_bedrock

    env = os.environ if environ is None else environ
    overrides = sorted(name for name in env if name.startswith(ENV_PREFIX) and "__" in name)
    config_text = config_source + (f" + {', '.join(overrides)}" if overrides else "")
    if not any(needs_bedrock(j) for j in config.judges):
        return f"backend: none (no Bedrock judges); config: {config_text}"
    endpoint = env.get(ENDPOINT_VAR) or config.bedrock.endpoint_url
    if embedded:
        why = "FARM_BACKEND=emulator" if env.get("FARM_BACKEND", "").strip().lower() == "emulator" else "no AWS credentials found"
        backend = f"Bedrock EMULATOR at {endpoint} (started here: {why}; {_EMULATOR_NOTE})"
    elif endpoint:
        where = ENDPOINT_VAR if env.get(ENDPOINT_VAR) else "bedrock.endpoint_url"
        backend = f"endpoint override {endpoint} (from {where}), region {config.bedrock.region}"
    else:
        creds = credentials_source(env) or "none in the environment or ~/.aws; botocore will try the instance profile"
        backend = f"Amazon Bedrock, region {config.bedrock.region} (credentials: {creds})"
    return f"backend: {backend}; config: {config_text}"


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
    return emulator


_lock = threading.Lock()
_shared: dict[str, Any] = {}
_warned: set[str] = set()


def embedded_ensemble(config: FarmConfig, *, quotas: QuotaBackend | None = None, patient: bool = False) -> Ensemble:
    """`Ensemble.from_config` as the CLI runs it: with no AWS credentials (and `FARM_BACKEND` not
    `bedrock`), one shared Bedrock emulator is started for this process and warned about once."""
    from farm.ensemble import Ensemble

    prepare_backend(config, embedded=True, stacklevel=2)
    return Ensemble.from_config(config, quotas=quotas, patient=patient)


def prepare_backend(config: FarmConfig, *, embedded: bool = False, stacklevel: int = 1) -> None:
    """For the Python API, before `Ensemble.from_config`: with `embedded`, start one shared emulator for
    this process when `choose_backend()` says so (as the CLI does); warn once when judging falls
    back to the emulator, or when Bedrock judges would run without an endpoint or credentials."""
    from farm.judges import needs_bedrock

    if not any(needs_bedrock(j) for j in config.judges) or os.environ.get(ENDPOINT_VAR):
        return
    backend = choose_backend()
    if backend == "emulator" and embedded:
        with _lock:
            if "emulator" not in _shared:
                emulator = start_embedded_emulator(config)
                _shared["emulator"] = emulator
                atexit.register(emulator.stop)
                message = f"farm: judging with the Bedrock emulator at {emulator.url}: no AWS credentials found; {_EMULATOR_NOTE}"
                _warn_once(stacklevel, "fallback", message)
    elif backend == "emulator":
        _warn_once(
            stacklevel,
            "no-credentials",
            "farm: no AWS credentials found and no Bedrock endpoint set: every Bedrock judge will fail "
            "('Unable to locate credentials'); build the ensemble with farm.embedded.embedded_ensemble to judge with the emulator, "
            "or configure AWS credentials",
        )


def _warn_once(stacklevel: int, key: str, message: str) -> None:
    """`stacklevel` 1: the warning points at the caller of `prepare_backend`."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 2)
