"""The Serve application builder: one ingress, running the rule judges itself, and one judge
deployment per Bedrock or local model judge (or per rule judge placed in its own deployment).

`serve run deploy/serve.yaml` and `serve deploy deploy/serve.yaml` name `deploy.app:build_app`;
`farm serve` calls it directly.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray.serve import Application
from ray.serve.config import BackpressureConfig

from deploy.ingress import RewardIngress, RuntimeTuning
from deploy.judge_deployment import JudgeDeployment, LocalJudgeDeployment
from deploy.options import DeploymentOptions, load_config, options_of, parse_config
from deploy.placement import bedrock_ongoing, check_placements, ingress_ongoing, placement_of, replicas_of
from farm.auth import AuthConfig
from farm.config import FarmConfig, JudgeConfig
from farm.judges import is_local, needs_bedrock
from farm.judges.local_runtime import model_directory

__all__ = ["DEFAULTS", "FarmAppArgs", "build_app", "deployment_options"]


class FarmAppArgs(BaseModel):
    """Builder arguments (the `args:` of the Serve config)."""

    model_config = ConfigDict(extra="forbid")

    config_path: str | None = None
    """A farm config YAML; without it (and without `config`), the packaged default."""
    config: dict[str, Any] | None = None
    """An inline farm config, instead of `config_path`."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables for every replica (e.g. the emulator's endpoint); never a secret."""
    check_model_paths: bool = True
    """Fail the build when a local judge's model_path is missing here (off when only workers have it)."""
    tuning: dict[str, Any] | None = None
    """The ingress `user_config` (weights, aggregation); changing only this reconfigures in place."""
    auth: AuthConfig | None = None
    """Replaces the farm config's `serve.auth`: where the ingress reads its tokens (never the tokens)."""
    insecure: bool = False
    """Serve without auth even where the HTTP proxy binds beyond loopback (refused otherwise)."""

    @field_validator("env")
    @classmethod
    def _no_token_in_env(cls, env: dict[str, str]) -> dict[str, str]:
        if "FARM_API_TOKEN" in env:
            raise ValueError("env must not carry FARM_API_TOKEN: it would be stored in the Serve config; use auth.token (a file or secret)")
        return env


DEFAULTS: dict[str, DeploymentOptions] = {
    # API judges wait on Bedrock, not on CPU: many requests in flight per replica (at least this many;
    # more when quota × deadline allows: deploy.placement.bedrock_ongoing), little CPU reserved.
    "bedrock": DeploymentOptions(num_replicas=1, max_ongoing_requests=256, max_queued_requests=2048, num_cpus=0.1),
    # Rule judges placed in their own deployment (they run in the ingress by default): fast and
    # CPU-bound, fewer in flight, but still far above Serve's default of 5.
    "rule": DeploymentOptions(num_replicas=1, max_ongoing_requests=64, max_queued_requests=2048, num_cpus=0.1),
    # Local models batch: enough requests in flight for batches to fill; one CPU for the forward pass.
    "local": DeploymentOptions(num_replicas=1, max_ongoing_requests=512, max_queued_requests=4096, num_cpus=1.0),
    # The ingress runs rule judges, fans out and aggregates; at least this many in flight, more when
    # its Bedrock judges take more (deploy.placement.ingress_ongoing); its queue bound is where Serve pushes back.
    "ingress": DeploymentOptions(num_replicas=1, max_ongoing_requests=128, max_queued_requests=512, num_cpus=0.1),
}


def deployment_options(
    options: DeploymentOptions, defaults: DeploymentOptions, env: dict[str, str], retry_after_s: float | None = None
) -> dict[str, Any]:
    """Serve `.options(...)` from typed settings; the kind's defaults fill what is unset."""
    merged = DeploymentOptions.model_validate({**defaults.model_dump(exclude_none=True), **options.model_dump(exclude_none=True)})
    actor_options: dict[str, Any] = {"num_cpus": merged.num_cpus if merged.num_cpus is not None else 0.1}
    if merged.num_gpus:
        actor_options["num_gpus"] = merged.num_gpus
    if merged.resources:
        actor_options["resources"] = dict(merged.resources)
    if env:
        actor_options["runtime_env"] = {"env_vars": dict(env)}
    out: dict[str, Any] = {
        "max_ongoing_requests": merged.max_ongoing_requests,
        "max_queued_requests": merged.max_queued_requests,
        "ray_actor_options": actor_options,
    }
    if merged.autoscaling is not None:
        out["autoscaling_config"] = merged.autoscaling.model_dump(exclude_none=True)
    else:
        out["num_replicas"] = merged.num_replicas
    if retry_after_s is not None:
        out["backpressure_config"] = BackpressureConfig(status_code=503, retry_after_s=retry_after_s)
    return out


def _judge_kind(judge: JudgeConfig) -> str:
    return "bedrock" if needs_bedrock(judge) else "local" if is_local(judge) else "rule"


def _judge_deployment(judge: JudgeConfig, config: FarmConfig, env: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """The deployment class and options for one judge; local judges on `cuda` reserve a GPU;
    Bedrock judges take as many requests at once as their quota can serve within the deadline."""
    kind = _judge_kind(judge)
    defaults = DEFAULTS[kind]
    given = options_of(judge.deployment)
    if kind == "bedrock":
        sized = bedrock_ongoing(judge, config, floor=defaults.max_ongoing_requests or 1, replicas=replicas_of(given))
        defaults = defaults.model_copy(update={"max_ongoing_requests": sized})
    options = deployment_options(given, defaults, env)
    if not is_local(judge):
        return JudgeDeployment, options
    options["max_constructor_retry_count"] = 2  # a model that cannot load will not load on the 20th try
    if getattr(judge, "device", "auto") == "cuda" and "num_gpus" not in options["ray_actor_options"]:
        options["ray_actor_options"]["num_gpus"] = 1
    options["user_config"] = {"max_batch_size": judge.max_batch_size, "batch_wait_timeout_s": judge.batch_wait_timeout_s}
    return LocalJudgeDeployment, options


def build_app(args: dict[str, Any] | FarmAppArgs | None = None) -> Application:
    args = FarmAppArgs.model_validate(args or {}) if not isinstance(args, FarmAppArgs) else args
    config: FarmConfig = parse_config(args.config, source="args.config") if args.config is not None else load_config(args.config_path)
    if args.auth is not None:
        config = config.model_copy(update={"serve": config.serve.model_copy(update={"auth": args.auth})})
    if args.check_model_paths:
        for judge in config.judges:
            if is_local(judge) and judge.model_path:
                model_directory(judge.model_path, judge.name)
    check_placements(config)
    raw = config.model_dump(mode="json", by_alias=True)
    judges = {}
    for judge in config.judges:
        if placement_of(judge) == "ingress":
            continue  # built and run inside the ingress
        deployment, options = _judge_deployment(judge, config, args.env)
        judges[judge.name] = deployment.options(name=f"judge-{judge.name}", **options).bind(raw, judge.name, config.serve.app_name)
    ingress_defaults = DEFAULTS["ingress"]
    sized = ingress_ongoing(config, floor=ingress_defaults.max_ongoing_requests or 1)
    ingress_defaults = ingress_defaults.model_copy(update={"max_ongoing_requests": sized})
    ingress_options = deployment_options(options_of(config.serve.ingress), ingress_defaults, args.env, config.serve.retry_after_s)
    user_config = args.tuning or {"weights": {j.name: j.weight for j in config.judges}, "aggregation": config.aggregation.model_dump()}
    RuntimeTuning.model_validate(user_config)
    # mypy keeps a decorated class's own type; @serve.deployment made it a Deployment, which has .options
    return RewardIngress.options(name="ingress", user_config=user_config, **ingress_options).bind(judges, raw, insecure=args.insecure)  # type: ignore[attr-defined]
