"""Where each judge runs under Serve, and how many requests a Bedrock judge's replica takes at once.

Rule judges (final answer, exact match, regex, length, JSON schema) take microseconds, less than
one replica round trip, so they run in the ingress process where the rollout already is. Bedrock
and local model judges own clients, quota leases or weights and scale on their own: they keep
their own deployments, and the ingress ships each request's rollouts to each of them once.
"""

from __future__ import annotations

import math
from typing import Literal

from deploy.options import DeploymentOptions, options_of
from farm.config import FarmConfig, JudgeConfig
from farm.errors import ConfigError
from farm.judges import is_local, needs_bedrock

__all__ = [
    "MAX_ONGOING_CAP",
    "Placement",
    "bedrock_ongoing",
    "check_placements",
    "ingress_ongoing",
    "is_rule",
    "placement_of",
    "replicas_of",
]

Placement = Literal["ingress", "deployment"]

MAX_ONGOING_CAP = 4096
"""Upper bound of a sized `max_ongoing_requests`: beyond it, scale replicas instead."""

_REPLICA_FIELDS = ("num_replicas", "max_ongoing_requests", "max_queued_requests", "autoscaling", "num_cpus", "num_gpus", "resources")


def is_rule(judge: JudgeConfig) -> bool:
    """A judge that needs neither Bedrock nor a model: pure CPU, microseconds per rollout."""
    return not needs_bedrock(judge) and not is_local(judge)


def placement_of(judge: JudgeConfig) -> Placement:
    """The judge's `deployment.placement`, or its kind's default (rule judges: the ingress)."""
    placement = options_of(judge.deployment).placement
    if placement is not None:
        return placement
    return "ingress" if is_rule(judge) else "deployment"


def check_placements(config: FarmConfig) -> None:
    """Refuse a placement that cannot work, and replica settings that would be silently ignored."""
    for index, judge in enumerate(config.judges):
        where = f"judges[{index}] ({judge.name!r}): deployment"
        options = options_of(judge.deployment)
        if options.placement == "ingress" and not is_rule(judge):
            raise ConfigError(
                f"{where}.placement is 'ingress', but only rule judges can run in the ingress; "
                f"a {judge.kind} judge owns a client or a model and needs its own deployment (placement: deployment)"
            )
        if placement_of(judge) == "ingress":
            given = [name for name in _REPLICA_FIELDS if getattr(options, name) is not None]
            if given:
                raise ConfigError(
                    f"{where}.{given[0]} is set, but the judge runs in the ingress (placement: ingress, the default for rule judges) "
                    "and has no replicas of its own; set deployment.placement: deployment to give it its own, "
                    f"or drop deployment.{given[0]}"
                )


def replicas_of(options: DeploymentOptions) -> int:
    """The replicas a deployment starts with: `num_replicas`, or autoscaling's floor (at least 1)."""
    if options.num_replicas is not None:
        return options.num_replicas
    scaling = options.autoscaling
    return max(1, scaling.initial_replicas or scaling.min_replicas) if scaling is not None else 1


def ingress_ongoing(config: FarmConfig, floor: int) -> int:
    """`max_ongoing_requests` per ingress replica: every request waits in the ingress on its
    Bedrock judges, so it needs as many slots as its busiest Bedrock judge's deployment takes in
    all (one-rollout requests from a per-sample trainer reward function would otherwise queue in
    waves in front of the ingress). The farm's own admission control, not this bound, refuses what
    the quota cannot serve in time."""
    wanted = max((bedrock_ongoing(j, config, floor=0) for j in config.judges if needs_bedrock(j)), default=0)
    return max(floor, min(MAX_ONGOING_CAP, math.ceil(wanted / replicas_of(options_of(config.serve.ingress)))))


def bedrock_ongoing(judge: JudgeConfig, config: FarmConfig, floor: int, replicas: int = 1) -> int:
    """`max_ongoing_requests` per replica for a Bedrock judge: quota × latency (Little's law).

    A request the ingress sends carries at least one rollout, hence at least one Bedrock call, and
    the farm waits for it at most `deadline_s`: the quota can finish `rpm / 60 × deadline_s` such
    requests within a deadline. A replica that admits fewer queues requests whose calls the quota
    could already be serving, and they go out in waves; more would only wait past their deadline.
    Spread over `replicas`, never below `floor` (the kind's default), never above `MAX_ONGOING_CAP`.
    """
    model = getattr(judge, "model", None)
    if model is None:
        return floor
    region = getattr(judge, "region", None) or config.bedrock.region
    quota = config.quota_for(model, region)
    wanted = math.ceil(quota.effective_rpm * judge.deadline_s / (60.0 * max(1, replicas)))
    return max(floor, min(MAX_ONGOING_CAP, wanted))
