"""Who may call the farm: where tokens come from, named API keys, and the one token check.

A token is a secret, so it is never a config value: the config names where it lives (a mounted
file, an AWS Secrets Manager secret or an SSM SecureString parameter) and the ingress reads it at
start. A source may hold several tokens (one per line, or a JSON `{"tokens": [...]}`), which is how
a rollover works: add the new token, switch the clients, drop the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from farm.errors import ConfigError

__all__ = ["ApiKey", "AuthConfig", "MIN_TOKEN_CHARS", "SecretRef", "TokenBook", "is_loopback", "read_tokens"]

MIN_TOKEN_CHARS = 16
"""Shorter tokens are refused at start: they can be guessed."""
_RESERVED_NAMES = frozenset({"anonymous", "token"})
"""Caller names the ingress gives the unauthenticated caller and the shared token's holders."""
_STORE_CALLS = {"connect_timeout": 2, "read_timeout": 5, "retries": {"total_max_attempts": 2, "mode": "standard"}}
"""A slow or unreachable secret store fails in seconds, not minutes: 2 attempts in all (boto3: 60 s each, up to 5)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Section):
    """Where a secret lives: exactly one of `file`, `secretsmanager` (name or ARN), `ssm` (parameter name)."""

    file: str | None = None
    secretsmanager: str | None = None
    ssm: str | None = None
    region: str | None = None
    """The AWS region of the secret store (default: the SDK's)."""

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        given = [k for k in ("file", "secretsmanager", "ssm") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"name exactly one of `file`, `secretsmanager`, `ssm` (got {given or 'none'})")
        return self

    def describe(self) -> str:
        if self.file:
            return f"token file {self.file}"
        if self.secretsmanager:
            return f"Secrets Manager secret {self.secretsmanager!r}"
        return f"SSM parameter {self.ssm!r}"


class ApiKey(_Section):
    """A named caller with its own token(s), request rate and share of the Bedrock quota."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    secret: SecretRef
    requests_per_s: float | None = Field(default=None, gt=0)
    """Requests per second this key may send (per ingress replica); none: unlimited."""
    bedrock_share: float | None = Field(default=None, gt=0, le=1)
    """Fraction of the tightest Bedrock model quota this key's rollouts may use; none: no cap."""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.lower() in _RESERVED_NAMES:
            raise ValueError(f"{name!r} is reserved (the unauthenticated caller and the shared token's holders); pick another")
        return name


class AuthConfig(_Section):
    """`serve.auth`: the shared token source and optional named keys. Both empty: no auth (loopback only)."""

    token: SecretRef | None = None
    keys: list[ApiKey] = Field(default_factory=list)
    refresh_s: float = Field(default=60.0, ge=1)
    """How often a running ingress re-reads its sources, so that a rotation needs no restart."""

    @model_validator(mode="after")
    def _unique(self) -> AuthConfig:
        names = [k.name for k in self.keys]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate key names in serve.auth.keys: {sorted(n for n in set(names) if names.count(n) > 1)}")
        return self

    @property
    def enabled(self) -> bool:
        return self.token is not None or bool(self.keys)


def read_tokens(ref: SecretRef) -> list[str]:
    """The tokens a source holds; `ConfigError` (naming the source, never a value) when there are none."""
    text = _read_secret(ref)
    tokens = _split(text, ref.describe())
    if not tokens:
        raise ConfigError(f"{ref.describe()} holds no token")
    short = [i for i, t in enumerate(tokens) if len(t) < MIN_TOKEN_CHARS]
    if short:
        raise ConfigError(f"{ref.describe()}: token #{short[0] + 1} is shorter than {MIN_TOKEN_CHARS} characters")
    return tokens


def _split(text: str, source: str) -> list[str]:
    """Tokens one per line, or a JSON object `{"tokens": [str, ...]}` / `{"token": str}`; any other
    JSON shape is a `ConfigError` naming `source` (never a value), not a token made of its text."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if data is not None or stripped.startswith("["):
            return _json_tokens(data, source)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _json_tokens(data: Any, source: str) -> list[str]:
    shape = f'{source} must hold one token per line, {{"tokens": ["..."]}} or {{"token": "..."}}'
    if not isinstance(data, dict) or not ({"tokens", "token"} & set(data)):
        raise ConfigError(f"{shape}; it holds JSON of another shape")
    if "tokens" in data:
        values = data["tokens"]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{shape}; `tokens` is not a list of strings")
    else:
        if not isinstance(data["token"], str):
            raise ConfigError(f"{shape}; `token` is not a string")
        values = [data["token"]]
    return [v.strip() for v in values if v.strip()]


def _read_secret(ref: SecretRef) -> str:
    if ref.file:
        path = Path(ref.file)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{ref.describe()} does not exist (mount the secret there, or fix serve.auth)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {ref.describe()}: {exc.__class__.__name__}") from None
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    bounded = Config(**_STORE_CALLS)
    try:
        if ref.secretsmanager:
            client = boto3.client("secretsmanager", region_name=ref.region, config=bounded)
            answer: dict[str, Any] = client.get_secret_value(SecretId=ref.secretsmanager)
            if "SecretString" not in answer:
                raise ConfigError(f"{ref.describe()} is binary; store the token(s) as a string")
            return str(answer["SecretString"])
        client = boto3.client("ssm", region_name=ref.region, config=bounded)
        return str(client.get_parameter(Name=ref.ssm, WithDecryption=True)["Parameter"]["Value"])
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise ConfigError(f"cannot read {ref.describe()}: {code}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot read {ref.describe()}: {exc.__class__.__name__}") from None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenBook:
    """Token digests by caller name. `check` compares against every entry in constant time."""

    def __init__(self, entries: list[tuple[str, str]]):
        self._entries = [(name, _digest(token)) for name, token in entries]

    @classmethod
    def load(cls, auth: AuthConfig) -> TokenBook:
        entries: list[tuple[str, str]] = []
        if auth.token is not None:
            entries += [("token", t) for t in read_tokens(auth.token)]
        for key in auth.keys:
            entries += [(key.name, t) for t in read_tokens(key.secret)]
        return cls(entries)

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def check(self, supplied: str) -> str | None:
        """The caller a token belongs to, or None. Every entry is compared, so timing leaks nothing."""
        digest = _digest(supplied)
        found = None
        for name, known in self._entries:
            if hmac.compare_digest(digest, known) and found is None:
                found = name
        return found

    def check_header(self, authorization: str) -> str | None:
        scheme, _, supplied = authorization.partition(" ")
        if scheme.lower() != "bearer" or not supplied:
            return None
        return self.check(supplied.strip())


def is_loopback(host: str | None) -> bool:
    """Whether an HTTP bind address is reachable only from this machine."""
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
