"""The Serve layer's part of the farm config: a judge's `deployment` and `serve.ingress`, typed.

`farm/config.py` keeps these sections opaque (`ServeSection`), so the configuration below Serve
knows nothing of replicas or autoscaling. Every config loaded for Serve goes through
`load_config`/`parse_config` here (the app builder, the CLI, `deploy.checks`), which validates
those sections with the schemas below and gives them back typed; a misspelt key is an error that
names it, as everywhere else in the config. No Ray import: the CLI uses this before Ray starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, model_validator

from farm import config as farm_config
from farm.config import FarmConfig, Section, ServeSection, invalid_config

__all__ = ["AutoscalingOptions", "DeploymentOptions", "load_config", "options_of", "parse_config", "typed"]


class AutoscalingOptions(Section):
    """Ray Serve `autoscaling_config`, typed: Ray ignores a misspelled key, this project does not."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=4, ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float = Field(default=32.0, gt=0)
    upscale_delay_s: float = Field(default=10.0, ge=0)
    downscale_delay_s: float = Field(default=120.0, ge=0)
    metrics_interval_s: float = Field(default=5.0, gt=0)
    look_back_period_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingOptions:
        if self.max_replicas < self.min_replicas:
            raise ValueError("max_replicas must be >= min_replicas")
        return self


class DeploymentOptions(ServeSection):
    """Serve replica settings for one deployment. Unset fields take the kind's default (README)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_replicas: int | None = Field(default=None, ge=1)
    max_ongoing_requests: int | None = Field(default=None, ge=1)
    """Concurrent requests per replica. Serve's default of 5 starves I/O-bound judges."""
    max_queued_requests: int | None = Field(default=None, ge=-1)
    """Requests a caller may queue before backpressure (HTTP 503 with Retry-After); -1 is unbounded."""
    autoscaling: AutoscalingOptions | None = None
    num_cpus: float | None = Field(default=None, ge=0)
    num_gpus: float | None = Field(default=None, ge=0)
    resources: dict[str, float] | None = None
    """Custom Ray resources, e.g. to pin a judge to one node type."""
    placement: Literal["ingress", "deployment"] | None = None
    """Where a judge runs under Serve: `ingress` (in the ingress process, no replica round trip;
    the default for rule judges, the only kind allowed there) or `deployment` (its own replicas;
    the default, and the only choice, for Bedrock and local model judges). Ignored for the ingress."""


def options_of(section: ServeSection) -> DeploymentOptions:
    """The typed options of a section: as is when `typed` already validated it, else validated now."""
    if isinstance(section, DeploymentOptions):
        return section
    return DeploymentOptions.model_validate(section.model_dump())


def typed(config: FarmConfig, *, source: str = "config") -> FarmConfig:
    """`config` with every judge's `deployment` and `serve.ingress` validated as `DeploymentOptions`;
    a ConfigError naming each bad key (`judges[0].deployment.autoscaling`, ...) otherwise."""
    errors: list[Any] = []

    def check(section: ServeSection, loc: tuple[Any, ...]) -> DeploymentOptions | None:
        try:
            return options_of(section)
        except ValidationError as exc:
            errors.extend({**e, "loc": (*loc, *e["loc"])} for e in exc.errors())
            return None

    judges = [(judge, check(judge.deployment, ("judges", i, "deployment"))) for i, judge in enumerate(config.judges)]
    ingress = check(config.serve.ingress, ("serve", "ingress"))
    if errors:
        raise invalid_config(errors, source=source)
    return config.model_copy(
        update={
            "judges": [judge.model_copy(update={"deployment": options}) for judge, options in judges],
            "serve": config.serve.model_copy(update={"ingress": ingress}),
        }
    )


def parse_config(data: Mapping[str, Any], *, source: str = "config", from_env: Mapping[tuple[str, ...], str] | None = None) -> FarmConfig:
    """`farm.config.parse_config`, then the Serve sections validated and typed (`typed`)."""
    return typed(farm_config.parse_config(data, source=source, from_env=from_env), source=source)


def load_config(path: str | Path | None = None, *, environ: Mapping[str, str] | None = None) -> FarmConfig:
    """`farm.config.load_config`, then the Serve sections validated and typed (`typed`)."""
    source = "the packaged default config" if path is None else str(path)
    return typed(farm_config.load_config(path, environ=environ), source=source)
