"""Preference judge: head-to-head comparison on Bedrock, judged in both orders.

Inside a group (rollouts of one prompt) each rollout meets up to `max_comparisons` others
(every pair in small groups; a ring in large ones, so cost grows linearly), and outcomes become
group rewards by win rate or Bradley–Terry. A rollout with a reference and no group is
compared against its reference. A verdict that flips when the responses swap places counts as
a tie and carries `position_inconsistent`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from farm.bedrock import ConverseClient, ConverseRequest
from farm.cache import VerdictCache, content_key
from farm.config import PreferenceJudgeConfig
from farm.flags import FailureReason, Flag
from farm.judges.base import failed_verdict, skipped_verdict
from farm.judges.converse_call import AskError, ask
from farm.parsing import parse_preference
from farm.prompting import PREFERENCE_TOOL, Prompt, preference_prompt, preference_schema
from farm.ranking import bradley_terry, win_rates
from farm.wire import Rollout, Verdict, prompt_text, wants_fresh

__all__ = ["PreferenceJudge", "combine_orders", "opponent_pairs"]

PROMPT_VERSION = "preference-v1"
_OUTCOME = {"A": 1.0, "B": 0.0, "tie": 0.5}


class _Usage(TypedDict):
    """What every verdict of one rollout's comparisons carries, whatever its status."""

    latency_ms: float
    input_tokens: int
    output_tokens: int
    flags: tuple[str, ...]


def combine_orders(first_winner: str, swapped_winner: str) -> tuple[float, bool]:
    """Outcome for the response shown first in `first_winner`'s call, and whether order mattered.

    `first_winner` judged (x as A, y as B); `swapped_winner` judged (y as A, x as B).
    """
    forward = _OUTCOME[first_winner]
    backward = 1.0 - _OUTCOME[swapped_winner]
    if forward == backward:
        return forward, False
    return 0.5, True


def opponent_pairs(size: int, max_opponents: int) -> list[tuple[int, int]]:
    """Pairs (i < j) to compare in a group of `size`: every pair when that is at most
    `max_opponents` per member, else a ring with offsets 1..k/2 (plus the opposite member when
    k is odd and the group even), so each member meets at most `max_opponents` others, the
    comparison graph stays connected and the cost grows linearly with the group."""
    if size - 1 <= max_opponents:
        return list(itertools.combinations(range(size), 2))
    offsets = list(range(1, max_opponents // 2 + 1))
    if max_opponents % 2 and size % 2 == 0:
        offsets.append(size // 2)
    pairs = {tuple(sorted((i, (i + d) % size))) for i in range(size) for d in offsets}
    return sorted((a, b) for a, b in pairs)


@dataclass
class _Comparison:
    outcome: float | None = None
    inconsistent: bool = False
    rationale: str = ""
    error: str | None = None
    reason: str | None = None
    timed_out: bool = False
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    flags: set[str] = field(default_factory=set)


class PreferenceJudge:
    def __init__(self, config: PreferenceJudgeConfig, client: ConverseClient, cache: VerdictCache):
        self.name = config.name
        self.config = config
        self._client = client
        self._cache = cache
        self._schema = preference_schema()
        scoring = config.model_dump(exclude={"name", "weight", "deadline_s", "gate", "mode", "group_reward", "max_comparisons"})
        self.fingerprint = content_key(PROMPT_VERSION, scoring)

    async def aclose(self) -> None:
        return None

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        deadline = time.monotonic() + self.config.deadline_s
        mode = self.config.mode
        groups: dict[str, list[int]] = defaultdict(list)
        for index, rollout in enumerate(rollouts):
            if rollout.group is not None:
                groups[rollout.group].append(index)
        verdicts: list[Verdict | None] = [None] * len(rollouts)
        tasks = []
        for members in groups.values():
            if mode != "reference" and len(members) >= 2:
                tasks.append(self._score_group(rollouts, members, deadline, verdicts))
        for index, rollout in enumerate(rollouts):
            in_group = rollout.group is not None and len(groups[rollout.group]) >= 2 and mode != "reference"
            if in_group:
                continue
            if mode != "group" and rollout.reference is not None:
                tasks.append(self._score_against_reference(rollout, index, deadline, verdicts))
            else:
                need = (
                    "a reference"
                    if mode == "reference"
                    else "a group of two or more rollouts" + (" or a reference" if mode == "auto" else "")
                )
                verdicts[index] = skipped_verdict(f"preference judging needs {need}", FailureReason.NO_REFERENCE)
        async with asyncio.TaskGroup() as group:  # one failing group cancels the rest and their reservations
            for task in tasks:
                group.create_task(task)
        assert all(v is not None for v in verdicts)
        return [v for v in verdicts if v is not None]

    async def _score_group(self, rollouts: Sequence[Rollout], members: list[int], deadline: float, out: list[Verdict | None]) -> None:
        pairs = opponent_pairs(len(members), self.config.max_comparisons)
        first = rollouts[members[0]]
        prompt = prompt_text(first.prompt)
        reference = first.reference if all(rollouts[m].reference == first.reference for m in members) else None
        fresh = any(wants_fresh(rollouts[m]) for m in members)
        async with asyncio.TaskGroup() as group:
            calls = [
                group.create_task(
                    self._compare(prompt, rollouts[members[i]].response, rollouts[members[j]].response, deadline, reference, fresh=fresh)
                )
                for i, j in pairs
            ]
        comparisons = [call.result() for call in calls]
        outcomes = {pair: c.outcome for pair, c in zip(pairs, comparisons, strict=True) if c.outcome is not None}
        rank = bradley_terry if self.config.group_reward == "bradley_terry" else win_rates
        rewards = rank(len(members), outcomes)
        for local, index in enumerate(members):
            mine = [(pair, c) for pair, c in zip(pairs, comparisons, strict=True) if local in pair]
            out[index] = self._verdict(rewards[local], [c for _, c in mine], len(mine), [pair[0] == local for pair, _ in mine])

    async def _score_against_reference(self, rollout: Rollout, index: int, deadline: float, out: list[Verdict | None]) -> None:
        assert rollout.reference is not None
        comparison = await self._compare(
            prompt_text(rollout.prompt), rollout.response, rollout.reference, deadline, fresh=wants_fresh(rollout)
        )
        out[index] = self._verdict(comparison.outcome, [comparison], 1)

    def _verdict(
        self, reward: float | None, comparisons: list[_Comparison], expected: int, shown_first: list[bool] | None = None
    ) -> Verdict:
        """`shown_first[i]`: this rollout was response A in comparison i's first order (default: always,
        as against a reference)."""
        firsts = shown_first or [True] * len(comparisons)
        done = [c for c in comparisons if c.outcome is not None]
        mine = [
            (c.outcome if first else 1.0 - c.outcome, c, first)
            for c, first in zip(comparisons, firsts, strict=True)
            if c.outcome is not None
        ]
        flags: set[str] = set()
        for c in comparisons:
            flags |= c.flags
            if c.inconsistent:
                flags.add(Flag.POSITION_INCONSISTENT)
        common: _Usage = dict(
            latency_ms=max((c.latency_ms for c in comparisons), default=0.0),
            input_tokens=sum(c.input_tokens for c in comparisons) // 2 if expected > 1 else comparisons[0].input_tokens,
            output_tokens=sum(c.output_tokens for c in comparisons) // 2 if expected > 1 else comparisons[0].output_tokens,
            flags=tuple(sorted(map(str, flags))),
        )
        errors = [c.error for c in comparisons if c.error]
        if reward is None or not done:
            status = "timeout" if comparisons and all(c.timed_out for c in comparisons) else "failed"
            reason = next((c.reason for c in comparisons if c.reason is not None), FailureReason.UNEXPECTED)
            return Verdict(score=None, status=status, error="; ".join(errors) or "no comparison succeeded", reason=reason, **common)
        inconsistent = sum(c.inconsistent for c in done)
        if errors:  # the reward rests on fewer comparisons than planned: say so
            common["flags"] = tuple(sorted({*common["flags"], str(Flag.JUDGE_INCOMPLETE)}))
        return Verdict(
            score=reward,
            status="ok",
            criteria={
                "win_rate": sum(outcome for outcome, _, _ in mine) / len(mine),
                "comparisons": float(len(done)),
                "position_inconsistent": float(inconsistent),
            },
            rationale=_rationale(mine, against_reference=shown_first is None)[:4000],
            error=f"{len(errors)} of {expected} comparisons failed: {errors[0]}" if errors else None,
            **common,
        )

    async def _compare(
        self, prompt: str, first: str, second: str, deadline: float, reference: str | None = None, *, fresh: bool = False
    ) -> _Comparison:
        async with asyncio.TaskGroup() as group:
            ahead = group.create_task(self._ordered(prompt, first, second, deadline, reference, fresh))
            behind = group.create_task(self._ordered(prompt, second, first, deadline, reference, fresh))
        forward, backward = ahead.result(), behind.result()
        result = _Comparison(
            input_tokens=forward.input_tokens + backward.input_tokens,
            output_tokens=forward.output_tokens + backward.output_tokens,
            latency_ms=max(forward.latency_ms, backward.latency_ms),
            flags=set(forward.flags) | set(backward.flags),
        )
        failures = [v for v in (forward, backward) if v.status != "ok"]
        if failures:
            result.error, result.reason = failures[0].error, failures[0].reason
            result.timed_out = all(v.status == "timeout" for v in failures)
            result.flags.discard(Flag.POSITION_INCONSISTENT)
            return result
        result.outcome, result.inconsistent = combine_orders(forward.rationale_winner, backward.rationale_winner)
        result.rationale = forward.rationale
        return result

    async def _ordered(self, prompt: str, a: str, b: str, deadline: float, reference: str | None, fresh: bool) -> _Ordered:
        key = content_key(self.fingerprint, prompt, a, b, reference)
        try:
            verdict = await self._cache.get_or_compute(key, lambda: self._ask(prompt, a, b, deadline, reference), fresh=fresh)
        except Exception as exc:  # noqa: BLE001 - one broken call fails its comparison, not (via the TaskGroups) the batch
            verdict = failed_verdict(exc)
        return _Ordered.from_verdict(verdict)

    async def _ask(self, prompt: str, a: str, b: str, deadline: float, reference: str | None) -> Verdict:
        config = self.config
        structured = config.structured_output == "tool"

        def build() -> tuple[Prompt, ConverseRequest]:
            rendered = preference_prompt(
                criteria=config.criteria,
                prompt=prompt,
                response_a=a,
                response_b=b,
                reference=reference,
                max_chars=config.max_response_chars,
                structured=structured,
            )
            request = ConverseRequest(
                model=config.model,
                user_text=rendered.user,
                system_text=rendered.system,
                max_tokens=config.max_tokens,
                tool_name=PREFERENCE_TOOL if structured else None,
                tool_description="Record which response is better and why.",
                tool_schema=self._schema if structured else None,
                service_tier=config.service_tier,  # bedrock: tier and prompt cache from judge config
                prompt_cache=config.prompt_cache,
            )
            return rendered, request

        try:
            answer = await ask(
                self._client, build, parse_preference, parse_retries=config.parse_retries, deadline=deadline, region=config.region
            )
        except AskError as exc:
            return exc.verdict()
        return Verdict(
            score=_OUTCOME[answer.value.winner],
            status="ok",
            criteria={"winner_" + answer.value.winner: 1.0},
            rationale=answer.value.rationale,
            latency_ms=answer.latency_ms,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            flags=tuple(sorted(map(str, answer.flags))),
        )


def _rationale(mine: list[tuple[float, _Comparison, bool]], *, against_reference: bool) -> str:
    """Who won, how often and in which order, then the judge's own words (from the first order)."""
    won = sum(outcome == 1.0 for outcome, _, _ in mine)
    lost = sum(outcome == 0.0 for outcome, _, _ in mine)
    tied = len(mine) - won - lost
    flipped = sum(c.inconsistent for _, c, _ in mine)
    if against_reference:
        outcome = mine[0][0]
        head = "beat the reference" if outcome == 1.0 else "lost to the reference" if outcome == 0.0 else "tied with the reference"
    else:
        head = f"won {won}, tied {tied}, lost {lost} of {len(mine)} comparisons with the other responses to this prompt"
    head += ", each judged in both orders"
    if flipped:
        head += f"; {flipped} verdict(s) changed when the order was swapped, counted as ties"
    reasons = [
        f"({'this response' if first else 'the other response'} shown as A) {c.rationale.strip()}"
        for _, c, first in mine
        if c.rationale.strip()
    ]
    return head + (". Judge: " + " | ".join(reasons) if reasons else ".")


@dataclass(frozen=True)
class _Ordered:
    """One ordered call's result, read back from the cached verdict."""

    status: str
    rationale_winner: str
    rationale: str
    error: str | None
    input_tokens: int
    output_tokens: int
    latency_ms: float
    flags: tuple[str, ...]
    reason: str | None = None

    @classmethod
    def from_verdict(cls, verdict: Verdict) -> _Ordered:
        winner = next((k.removeprefix("winner_") for k in verdict.criteria if k.startswith("winner_")), "tie")
        cached = verdict.cached
        return cls(
            status=verdict.status,
            rationale_winner=winner,
            rationale=verdict.rationale,
            error=verdict.error,
            reason=verdict.reason,
            input_tokens=0 if cached else verdict.input_tokens,
            output_tokens=0 if cached else verdict.output_tokens,
            latency_ms=verdict.latency_ms,
            flags=verdict.flags,
        )
