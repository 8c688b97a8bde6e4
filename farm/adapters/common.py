"""What every adapter shares: choosing a client from arguments or the environment."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from farm.client import FarmClient, HttpFarmClient
from farm.errors import ConfigError

__all__ = ["client_from", "group_key", "text_of"]


def client_from(url: str | None = None, app_name: str | None = None, token: str | None = None) -> FarmClient | HttpFarmClient:
    """HTTP when a URL is given (or `FARM_URL`), else the Serve handle of `app_name` (or `FARM_APP`)."""
    url = url or os.environ.get("FARM_URL")
    token = token or os.environ.get("FARM_API_TOKEN")
    if url:
        return HttpFarmClient(url, token=token)
    app_name = app_name or os.environ.get("FARM_APP")
    if app_name:
        return FarmClient(app_name)
    raise ConfigError("no farm to call: pass url= or app_name=, or set FARM_URL or FARM_APP")


def text_of(value: Any) -> str:
    """A completion or prompt as text: a string, or chat messages (the last assistant turn's content)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        return str(value[-1].get("content", ""))
    raise ConfigError(f"expected a string or a list of chat messages, got {type(value).__name__}")


def group_key(prompt: Any) -> str:
    return hashlib.sha256(repr(prompt).encode("utf-8", "surrogatepass")).hexdigest()[:16]
