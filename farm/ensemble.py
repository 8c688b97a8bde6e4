"""The in-process ensemble: gates first, then every judge concurrently, then aggregation.

The Ray Serve graph composes the same pieces across processes; this one runs in a single
event loop (the CLI scorer, tests, and users' own scripts).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from farm.aggregate import aggregate, disagreement
from farm.bedrock import ConverseClient
from farm.cache import VerdictCache
from farm.cascade import NOT_NEEDED_REASON, Reason, cost_tiers, escalations
from farm.config import AggregationConfig, FarmConfig, IntegrityConfig, JudgeConfig
from farm.errors import JudgeCancelledError, JudgeTimeoutError
from farm.flags import FailureReason, Flag
from farm.judges import Judge, build_judge, failed_verdict, needs_bedrock, skipped_verdict
from farm.ratelimit import QuotaBackend, QuotaRegistry
from farm.screening import defences
from farm.screening.score_map import apply_score_map
from farm.wire import ResultStatus, RewardResult, Rollout, Verdict

__all__ = ["Ensemble", "EnsembleMember", "combine"]

_GRACE_S = 5.0


@dataclass(frozen=True)
class EnsembleMember:
    config: JudgeConfig
    judge: Judge


def combine(
    rollout: Rollout,
    verdicts: dict[str, Verdict],
    members: Sequence[EnsembleMember],
    aggregation: AggregationConfig,
    extra_flags: Sequence[str] = (),
    escalation: Mapping[str, str] | None = None,
) -> RewardResult:
    """Aggregate one rollout's verdicts into its result (pure). `escalation` is the cascade's record
    (farm/cascade.py): a judge it did not need is no failure, and the quorum counts only judges called."""
    voters = [m for m in members if not m.config.gate] or list(members)
    quorum = aggregation.quorum
    if escalation is not None:
        called = [m for m in voters if escalation.get(m.config.name) != Reason.NOT_NEEDED]
        quorum = max(1, min(quorum, len(called)))
    scored = [(verdicts[m.config.name].score, m.config.weight) for m in voters]
    flags: set[str] = set(extra_flags)
    for verdict in verdicts.values():
        flags.update(verdict.flags)
        if verdict.status in ("failed", "timeout"):
            flags.add(Flag.JUDGE_FAILED)
    answered = sum(1 for score, _ in scored if score is not None)
    reward: float | None
    if answered >= quorum:
        reward = aggregate(aggregation.method, scored, trim_fraction=aggregation.trim_fraction, pass_threshold=aggregation.pass_threshold)
    else:
        reward = None
        if any(v.status in ("failed", "timeout") for v in verdicts.values()) or answered:
            flags.add(Flag.QUORUM_MISSED)
    spread = disagreement([score for score, _ in scored])
    if spread is not None and spread > aggregation.disagreement_threshold:
        flags.add(Flag.HIGH_DISAGREEMENT)
    status: ResultStatus
    if reward is None:
        status = "failed"
    elif Flag.JUDGE_FAILED in flags or Flag.JUDGE_INCOMPLETE in flags:
        status = "partial"
    else:
        status = "ok"
    return RewardResult(
        id=rollout.id,
        reward=reward,
        status=status,
        judges=verdicts,
        disagreement=spread,
        flags=tuple(sorted(map(str, flags))),
        escalation=None if escalation is None else dict(escalation),
    )


class Ensemble:
    """Scores batches of rollouts with every configured judge."""

    def __init__(
        self,
        members: Sequence[EnsembleMember],
        aggregation: AggregationConfig,
        *,
        client: ConverseClient | None = None,
        cache: VerdictCache | None = None,
        integrity: IntegrityConfig | None = None,
        patient: bool = False,
    ):
        """`patient`: nobody waits on the answer (offline scoring, probes, calibration): judges
        are not cut off at their deadline while they wait for quota; each Bedrock call is
        bounded from the moment the quota admits it instead."""
        self.members = list(members)
        self.patient = patient
        self.aggregation = aggregation
        self.client = client
        self.cache = cache
        self.integrity = integrity or IntegrityConfig()

    @classmethod
    def from_config(
        cls,
        config: FarmConfig,
        *,
        cache: VerdictCache | None = None,
        quotas: QuotaBackend | None = None,
        patient: bool = False,
    ) -> Ensemble:
        """Judges built from config; Bedrock judges share one client whose quota lives in this
        process, or in `quotas` (the cluster's quota actors, for Ray workers). Starts nothing and
        chooses no backend: botocore's endpoint and credentials are the caller's (the CLI, or
        `farm.embedded.embedded_ensemble`, which starts the emulator when no credentials are found)."""
        cache = cache or VerdictCache(config.cache.max_entries, enabled=config.cache.enabled)
        client = None
        if any(needs_bedrock(j) for j in config.judges):
            client = ConverseClient(config.bedrock, quotas or QuotaRegistry(config.quota_for), patient=patient)
        members = [EnsembleMember(j, build_judge(j, client, cache)) for j in config.judges]
        return cls(members, config.aggregation, client=client, cache=cache, integrity=config.integrity, patient=patient)

    async def aclose(self) -> None:
        for member in self.members:
            await member.judge.aclose()
        if self.client is not None:
            await self.client.aclose()

    async def score(self, rollouts: Sequence[Rollout], *, every_judge: bool = False) -> list[RewardResult]:
        """One result per rollout, in order. `every_judge`: with the cost cascade on, call every
        judge anyway and record what the cascade would have done (`forced` where it would not have
        called the judge): probes and calibration need every judge's score. A per-call switch, so
        wrappers of `score` (the CLI's progress and counts) still see the call."""
        verdicts: list[dict[str, Verdict]] = [{} for _ in rollouts]
        closed: dict[int, RewardResult] = {}
        empty = [i for i, r in enumerate(rollouts) if not r.response.strip()]
        for i in empty:
            closed[i] = self._empty_result(rollouts[i])
        live = [i for i in range(len(rollouts)) if i not in closed]

        gates = [m for m in self.members if m.config.gate]
        if gates and live:
            await self._run(gates, rollouts, live, verdicts)
            still_live = []
            for i in live:
                if any(verdicts[i][g.config.name].score == 0.0 for g in gates):
                    closed[i] = self._gated_result(rollouts[i], verdicts[i])
                else:
                    still_live.append(i)
            live = still_live
        others = [m for m in self.members if not m.config.gate]
        record: dict[int, dict[str, str]] = {}
        if others and live:
            record = await self._judge(others, rollouts, live, verdicts, every_judge=every_judge)
        await defences.rerender(rollouts, live, verdicts, self.members, self.integrity, self._guarded)
        defences.prepare(rollouts, live, verdicts, self.members, self.integrity)
        combined = [
            closed[i] if i in closed else combine(r, verdicts[i], self.members, self.aggregation, escalation=record.get(i))
            for i, r in enumerate(rollouts)
        ]
        if defences.screen_off_loop(rollouts):  # the detector is pure Python: a long batch would stall the loop
            return await asyncio.to_thread(lambda: [self._screen(r, c) for r, c in zip(rollouts, combined, strict=True)])
        return [self._screen(r, c) for r, c in zip(rollouts, combined, strict=True)]

    def _screen(self, rollout: Rollout, result: RewardResult) -> RewardResult:
        """Integrity defences on the aggregated result (farm/screening/defences.py): a caught attack
        (detector hit or judge contradiction) is flagged and gets the injection policy."""
        return defences.screen(rollout, result, self.members, self.integrity)

    async def _judge(
        self,
        members: Sequence[EnsembleMember],
        rollouts: Sequence[Rollout],
        live: list[int],
        out: list[dict[str, Verdict]],
        *,
        every_judge: bool,
    ) -> dict[int, dict[str, str]]:
        """Every non-gate judge on the live rollouts; with `aggregation.escalate` on, the cost cascade
        (farm/cascade.py): tier by tier, each dearer tier batched over the rollouts that need it, all
        within the deadline a single round of judges would have had. Returns the cascade's record
        per rollout index (empty when the cascade is off)."""
        rule = self.aggregation.escalate
        tiers = [[members[k] for k in tier] for tier in cost_tiers([m.config for m in members])]
        if not rule.enabled or len(tiers) < 2:
            await self._run(members, rollouts, live, out)
            return {}
        cutoff = None if self.patient else time.monotonic() + max(m.config.deadline_s for m in members) + _GRACE_S
        await self._run(members if every_judge else tiers[0], rollouts, live, out)
        record: dict[int, dict[str, str]] = {i: {m.config.name: str(Reason.RAN) for m in tiers[0]} for i in live}
        pending, ran = list(live), list(tiers[0])
        for tier in tiers[1:]:
            needed = escalations(rollouts, pending, out, [m.config for m in ran], rule, self.aggregation, fresh_forces=not every_judge)
            for i in live:
                for m in tier:
                    reason = needed.get(i)
                    if reason is not None:
                        record[i][m.config.name] = str(reason)
                    elif every_judge:
                        record[i][m.config.name] = str(Reason.FORCED)
                    else:
                        record[i][m.config.name] = str(Reason.NOT_NEEDED)
                        out[i][m.config.name] = skipped_verdict(NOT_NEEDED_REASON, FailureReason.NOT_NEEDED)
            if needed and not every_judge:
                await self._run(tier, rollouts, sorted(needed), out, cutoff=cutoff)
            pending = sorted(needed)
            ran.extend(tier)
        return record

    async def _run(
        self,
        members: Sequence[EnsembleMember],
        rollouts: Sequence[Rollout],
        indices: list[int],
        out: list[dict[str, Verdict]],
        cutoff: float | None = None,
    ) -> None:
        batch = [rollouts[i] for i in indices]
        async with asyncio.TaskGroup() as group:  # a cancelled request cancels every judge call
            tasks = [group.create_task(self._guarded(m, batch, cutoff)) for m in members]
        answers = [task.result() for task in tasks]
        for member, member_verdicts in zip(members, answers, strict=True):
            score_map = member.config.score_map
            for i, verdict in zip(indices, member_verdicts, strict=True):
                out[i][member.config.name] = verdict if score_map is None else apply_score_map(verdict, score_map)

    async def _guarded(self, member: EnsembleMember, batch: list[Rollout], cutoff: float | None = None) -> list[Verdict]:
        """A judge that raises, hangs or miscounts still yields one verdict per rollout. `cutoff`
        (monotonic): a cascade tier also stops where the whole request's judging must end."""
        bound = None if self.patient else member.config.deadline_s + _GRACE_S
        cut_short = cutoff is not None and bound is not None and cutoff - time.monotonic() < bound
        if cut_short and cutoff is not None:
            bound = cutoff - time.monotonic()
            if bound <= 0:  # the cheaper tiers used the whole deadline: no call that could not be answered
                error = JudgeTimeoutError(f"judge {member.config.name!r} was escalated to with no time left of the request's deadline")
                return [failed_verdict(error) for _ in batch]
        try:
            verdicts = await asyncio.wait_for(member.judge.score(batch), bound)
        except TimeoutError:
            if cut_short:
                name = member.config.name
                error = JudgeTimeoutError(f"judge {name!r} was escalated to with {bound:.1f}s left of the request's deadline and ran out")
            else:
                error = JudgeTimeoutError(f"judge {member.config.name!r} exceeded its {member.config.deadline_s:g}s deadline")
            return [failed_verdict(error) for _ in batch]
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise  # this request itself is being cancelled: let it go
            # a cancellation leaked from work this request shared with another: a failed judge, not a lost request
            cancelled = JudgeCancelledError(f"judge {member.config.name!r} was cancelled by work shared with another request")
            return [failed_verdict(cancelled) for _ in batch]
        except Exception as exc:  # noqa: BLE001 - a judge that raised is a failed verdict with the reason, not a lost request
            return [failed_verdict(exc) for _ in batch]
        if len(verdicts) != len(batch):
            miscount = RuntimeError(f"judge {member.config.name!r} returned {len(verdicts)} verdicts for {len(batch)} rollouts")
            return [failed_verdict(miscount) for _ in batch]
        return verdicts

    def _empty_result(self, rollout: Rollout) -> RewardResult:
        verdicts = {m.config.name: skipped_verdict("empty response", FailureReason.EMPTY_RESPONSE) for m in self.members}
        zero = self.aggregation.empty_response == "zero"
        return RewardResult(
            id=rollout.id,
            reward=0.0 if zero else None,
            status="ok" if zero else "failed",
            judges=verdicts,
            flags=(str(Flag.EMPTY_RESPONSE),),
        )

    def _gated_result(self, rollout: Rollout, verdicts: dict[str, Verdict]) -> RewardResult:
        complete = dict(verdicts)
        for member in self.members:
            complete.setdefault(member.config.name, skipped_verdict("a gate judge scored 0", FailureReason.GATED))
        return RewardResult(id=rollout.id, reward=0.0, status="ok", judges=complete, flags=(str(Flag.GATE_FAILED),))
