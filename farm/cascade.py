"""The cost cascade: which judges a rollout needs, decided tier by tier from what cheaper judges said.

Judges declare a cost tier (`cost` in config: free rules, cheap local models, expensive Bedrock
judges). With `aggregation.escalate` on, the ensemble runs the cheapest tier on every rollout and
a dearer tier only on the rollouts the judges so far cannot settle: no reference, a judge that did
not score, judges that disagree, or a reward in the uncertain band. Pure functions over verdicts,
so the same decision is made live (the ensemble) and after the fact (probe and calibrate, which run
every judge and record what the cascade would have done).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from enum import StrEnum

from farm.aggregate import aggregate, disagreement
from farm.config import AggregationConfig, EscalateConfig, JudgeConfig
from farm.flags import FailureReason
from farm.wire import RewardResult, Rollout, Verdict, wants_fresh

__all__ = ["NOT_NEEDED_REASON", "Reason", "as_cascaded", "cost_tiers", "escalated", "escalation_reason", "escalations", "reached"]


class Reason(StrEnum):
    """What `RewardResult.escalation` says about each judge (a closed vocabulary)."""

    RAN = "ran"
    """The cheapest tier: it runs on every rollout."""
    NOT_NEEDED = "not_needed"
    """The cheaper judges settled the rollout; this judge was not called (not a failure)."""
    NO_REFERENCE = "no_reference"
    """Escalated: the rollout has no reference, so rule judges cannot check it."""
    UNDECIDED = "undecided"
    """Escalated: a cheaper judge did not score (skipped, abstained, failed or timed out)."""
    DISAGREE = "disagree"
    """Escalated: the cheaper judges' scores spread more than `escalate.max_spread`."""
    UNCERTAIN = "uncertain"
    """Escalated: the reward so far lies inside `escalate.uncertain`."""
    GROUP = "group"
    """Escalated with its group (`escalate.scope: group`): another rollout of the group needed it."""
    FORCED = "forced"
    """Ran although the cascade would not have called it (probe, calibrate: every judge must answer)."""


NOT_NEEDED_REASON = "not needed: the cheaper judges settled this rollout (cascade)"
"""The `error` text of the skipped verdict a not-needed judge gets."""

_NOT_CALLED = frozenset({Reason.NOT_NEEDED})
_BASE = frozenset({Reason.RAN, Reason.NOT_NEEDED, Reason.FORCED})


def cost_tiers(configs: Sequence[JudgeConfig]) -> list[list[int]]:
    """Indices of `configs` grouped by cost tier, cheapest first."""
    by_tier: dict[int, list[int]] = defaultdict(list)
    for index, config in enumerate(configs):
        by_tier[config.cost_tier].append(index)
    return [by_tier[tier] for tier in sorted(by_tier)]


def escalation_reason(
    rollout: Rollout,
    verdicts: Mapping[str, Verdict],
    ran: Sequence[JudgeConfig],
    rule: EscalateConfig,
    aggregation: AggregationConfig,
    *,
    fresh_forces: bool = True,
) -> Reason | None:
    """Why `rollout` needs the next tier, given the verdicts of the judges in `ran`; None when settled.
    A rollout marked fresh (`farm_fresh`: canaries, self-consistency, scheduled probes) is `forced`:
    those measure every judge, and a judge the cascade spares would never be watched. `fresh_forces`
    False: the decision the cascade would make for the same rollout unmarked (every judge runs anyway)."""
    if fresh_forces and wants_fresh(rollout):
        return Reason.FORCED
    if rule.no_reference and rollout.reference is None:
        return Reason.NO_REFERENCE
    seen = [(verdicts[c.name].score, c.weight) for c in ran if c.name in verdicts]
    scored = [(s, w) for s, w in seen if s is not None]
    if not scored or (rule.undecided and len(scored) < len(seen)):
        return Reason.UNDECIDED  # nobody scored: the next tier is the only chance of a reward
    spread = disagreement([s for s, _ in scored])
    if rule.max_spread is not None and spread is not None and spread > rule.max_spread:
        return Reason.DISAGREE
    if rule.uncertain is not None:
        low, high = rule.uncertain
        so_far = aggregate(aggregation.method, scored, trim_fraction=aggregation.trim_fraction, pass_threshold=aggregation.pass_threshold)
        if so_far is None:
            return Reason.UNDECIDED
        if low < so_far < high:
            return Reason.UNCERTAIN
    return None


def escalations(
    rollouts: Sequence[Rollout],
    candidates: Sequence[int],
    verdicts: Sequence[Mapping[str, Verdict]],
    ran: Sequence[JudgeConfig],
    rule: EscalateConfig,
    aggregation: AggregationConfig,
    *,
    fresh_forces: bool = True,
) -> dict[int, Reason]:
    """Which of `candidates` (indices into `rollouts`) go on to the next tier, and why. With
    `scope: group`, a rollout pulls the other candidates of its group along (`group`)."""
    out: dict[int, Reason] = {}
    for i in candidates:
        reason = escalation_reason(rollouts[i], verdicts[i], ran, rule, aggregation, fresh_forces=fresh_forces)
        if reason is not None:
            out[i] = reason
    if rule.scope == "group":
        needy = {rollouts[i].group for i, why in out.items() if rollouts[i].group is not None and why != Reason.FORCED}
        for i in candidates:
            if i not in out and rollouts[i].group in needy:
                out[i] = Reason.GROUP
    return out


def escalated(result: RewardResult | Mapping[str, str] | None) -> bool:
    """Whether the cascade called (or, forced, would have called) a judge beyond the cheapest tier;
    takes a result or its `escalation` record (as read back from a results file)."""
    record = result.escalation if isinstance(result, RewardResult) else result
    return record is not None and any(v not in _BASE for v in record.values())


def reached(result: RewardResult, judges: Sequence[str]) -> bool:
    """Whether any of `judges` was actually called for this result (cascade off: all were)."""
    if result.escalation is None:  # no cascade: a judge was called unless skipped (gate, empty response)
        return any((v := result.judges.get(name)) is not None and v.status != "skipped" for name in judges)
    return any(name in result.escalation and result.escalation[name] not in _NOT_CALLED for name in judges)


def as_cascaded(result: RewardResult) -> tuple[dict[str, Verdict], dict[str, str]] | None:
    """A forced result (every judge ran) as the cascade would have left it: the verdicts and record
    with each `forced` judge not needed. None when the result has no cascade record."""
    if result.escalation is None:
        return None
    forced = {name for name, reason in result.escalation.items() if reason == Reason.FORCED}
    verdicts = {name: (_NOT_NEEDED_VERDICT if name in forced else v) for name, v in result.judges.items()}
    record = {name: (str(Reason.NOT_NEEDED) if name in forced else reason) for name, reason in result.escalation.items()}
    return verdicts, record


_NOT_NEEDED_VERDICT = Verdict(score=None, status="skipped", error=NOT_NEEDED_REASON, reason=FailureReason.NOT_NEEDED)
