"""Preference judge: responses compared with each other on Bedrock, position bias cancelled.

Inside a group (rollouts of one prompt), by default (`comparison: listwise`) one call ranks the
whole group, with the shared reference placed in the ranking as an anchor item, and the call is
repeated in a shuffled (then reversed) order so position bias cancels; rankings become pairwise
outcomes. With `comparison: pairwise` each rollout meets up to `max_comparisons` others (every
pair in small groups; a ring in large ones), each pair judged in both orders, and a verdict that
flips when the responses swap places counts as a tie and carries `position_inconsistent`.
Either way, outcomes (an incomplete comparison graph is fine) become group rewards by win rate or
Bradley–Terry, anchored on the reference when there is one. A rollout with a reference and no
group is compared against its reference.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from farm.bedrock import ConverseClient
from farm.cache import VerdictCache
from farm.config import PreferenceJudgeConfig
from farm.errors import JudgeError
from farm.flags import FailureReason, Flag
from farm.judges.base import failed_verdict, skipped_verdict
from farm.judges.bedrock_judge import BedrockJudge, Reading, Tool
from farm.parsing import PreferenceAnswer, RankingAnswer, parse_preference, parse_ranking
from farm.prompting import (
    LISTWISE_TOOL,
    PREFERENCE_TOOL,
    REFERENCE_LABEL,
    listwise_prompt,
    listwise_schema,
    preference_prompt,
    preference_schema,
)
from farm.ranking import anchored_rewards, bradley_terry, merge_outcomes, ranking_outcomes, win_rates
from farm.wire import Rollout, Verdict, prompt_text, wants_fresh

__all__ = ["PreferenceJudge", "combine_orders", "list_orders", "opponent_pairs", "shared_reference"]

_OUTCOME = {"A": 1.0, "B": 0.0, "tie": 0.5}


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


def shared_reference(references: Sequence[str | None]) -> str | None:
    """A group's shared reference, the one a group judge may show and anchor on (None when a
    member has none or the members disagree on it)."""
    first = references[0] if references else None
    if first is None or any(reference != first for reference in references):
        return None
    return first


def list_orders(size: int, orders: int, max_items: int, seed: str) -> list[list[list[int]]]:
    """The listwise calls for a group of `size`: per order, the chunks (each a list of member
    indices in the order shown). Order 0 is a shuffle seeded by the group's content (so a rerun
    asks the same questions and hits the cache), order 1 its reverse (a linear position bias
    cancels exactly), later orders fresh shuffles. A group over `max_items` is cut into nearly
    equal chunks; chunks differ between orders, so the comparison graph stays connected."""
    rng = random.Random(seed)
    first = list(range(size))
    rng.shuffle(first)
    out = []
    for k in range(orders):
        if k == 0:
            order = first
        elif k == 1:
            order = first[::-1]
        else:
            order = list(range(size))
            rng.shuffle(order)
        chunks = -(-size // max_items)
        if chunks > 1 and k % 2 == 1:  # the reverse would keep the same chunks: rotate by half a chunk
            shift = max(1, size // chunks // 2)
            order = order[shift:] + order[:shift]
        out.append([order[c * size // chunks : (c + 1) * size // chunks] for c in range(chunks)])
    return out


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
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    latency_ms: float = 0.0
    flags: set[str] = field(default_factory=set)


class PreferenceJudge(BedrockJudge):
    PROMPT_VERSION = "preference-v1"
    UNSCORED = BedrockJudge.UNSCORED | {
        "mode",
        "group_reward",
        "max_comparisons",
        "comparison",
        "listwise_orders",
        "max_list_items",
        "anchor",
    }
    config: PreferenceJudgeConfig

    def __init__(self, config: PreferenceJudgeConfig, client: ConverseClient, cache: VerdictCache):
        super().__init__(config, client, cache)
        self._tool = Tool(PREFERENCE_TOOL, "Record which response is better and why.", preference_schema())

    async def score(self, rollouts: Sequence[Rollout]) -> list[Verdict]:
        deadline = time.monotonic() + self.config.deadline_s
        mode = self.config.mode
        groups: dict[str, list[int]] = defaultdict(list)
        for index, rollout in enumerate(rollouts):
            if rollout.group is not None:
                groups[rollout.group].append(index)
        verdicts: list[Verdict | None] = [None] * len(rollouts)
        tasks = []
        score_group = self._score_list if self.config.comparison == "listwise" else self._score_group
        for members in groups.values():
            if mode != "reference" and len(members) >= 2:
                tasks.append(score_group(rollouts, members, deadline, verdicts))
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

    def _anchor(self, rollouts: Sequence[Rollout], members: list[int]) -> str | None:
        return shared_reference([rollouts[m].reference for m in members])

    async def _score_group(self, rollouts: Sequence[Rollout], members: list[int], deadline: float, out: list[Verdict | None]) -> None:
        size = len(members)
        pairs = opponent_pairs(size, self.config.max_comparisons)
        first = rollouts[members[0]]
        prompt = prompt_text(first.prompt)
        reference = self._anchor(rollouts, members)
        anchored = reference is not None and self.config.anchor == "reference"
        if anchored:  # the reference is one more opponent of every rollout (player `size`)
            pairs = pairs + [(i, size) for i in range(size)]
        texts = [rollouts[m].response for m in members] + ([reference] if anchored and reference is not None else [])
        fresh = any(wants_fresh(rollouts[m]) for m in members)
        async with asyncio.TaskGroup() as group:
            calls = [group.create_task(self._compare(prompt, texts[i], texts[j], deadline, reference, fresh=fresh)) for i, j in pairs]
        comparisons = [call.result() for call in calls]
        outcomes = {pair: c.outcome for pair, c in zip(pairs, comparisons, strict=True) if c.outcome is not None}
        if anchored:
            rewards = anchored_rewards(size, outcomes)
        else:
            rank = bradley_terry if self.config.group_reward == "bradley_terry" else win_rates
            rewards = rank(size, outcomes)
        for local, index in enumerate(members):
            mine = [(pair, c) for pair, c in zip(pairs, comparisons, strict=True) if local in pair]
            out[index] = self._verdict(rewards[local], [c for _, c in mine], len(mine), [pair[0] == local for pair, _ in mine])

    async def _score_list(self, rollouts: Sequence[Rollout], members: list[int], deadline: float, out: list[Verdict | None]) -> None:
        config = self.config
        size = len(members)
        prompt = prompt_text(rollouts[members[0]].prompt)
        shared = self._anchor(rollouts, members)
        anchored = shared is not None and config.anchor == "reference"
        responses = [rollouts[m].response for m in members]
        fresh = any(wants_fresh(rollouts[m]) for m in members)
        plan = list_orders(size, config.listwise_orders, config.max_list_items, self.fingerprint + "".join(responses))
        chunks = [chunk for order in plan for chunk in order]
        async with asyncio.TaskGroup() as group:
            calls = [
                group.create_task(self._rank(prompt, [responses[i] for i in chunk], shared, anchored, deadline, fresh)) for chunk in chunks
            ]
        results = [call.result() for call in calls]
        rounds: list[dict[tuple[int, int], float]] = []
        for chunk, ranked in zip(chunks, results, strict=True):
            if ranked.ranking is None:
                continue
            players = [size if label == REFERENCE_LABEL else chunk[int(label) - 1] for label in ranked.ranking]
            rounds.append(ranking_outcomes(players))
        merged, flipped = merge_outcomes(rounds)
        if anchored:
            rewards = anchored_rewards(size, merged)
        else:
            rank = bradley_terry if config.group_reward == "bradley_terry" else win_rates
            rewards = rank(size, merged)
        for local, index in enumerate(members):
            mine = [(chunk, r) for chunk, r in zip(chunks, results, strict=True) if local in chunk]
            out[index] = self._list_verdict(local, size, rewards[local], mine, merged, flipped, anchored)

    def _list_verdict(
        self,
        local: int,
        size: int,
        reward: float | None,
        calls: list[tuple[list[int], _Ranked]],
        merged: Mapping[tuple[int, int], float],
        flipped: Mapping[tuple[int, int], bool],
        anchored: bool,
    ) -> Verdict:
        flags: set[str] = set()
        for _, r in calls:
            flags |= set(r.flags)

        def share(tokens: str) -> int:  # a call's usage split among the responses it ranked, summing to the call's
            return sum(getattr(r, tokens) // len(chunk) + (chunk.index(local) < getattr(r, tokens) % len(chunk)) for chunk, r in calls)

        common: dict[str, Any] = dict(
            latency_ms=max((r.latency_ms for _, r in calls), default=0.0),
            input_tokens=share("input_tokens"),
            output_tokens=share("output_tokens"),
            cache_read_tokens=share("cache_read_tokens"),
            cache_write_tokens=share("cache_write_tokens"),
        )
        errors = [r.error or "no ranking" for _, r in calls if r.ranking is None]
        done = [r for _, r in calls if r.ranking is not None]
        if reward is None or not done:
            # the judge's own failed verdict (built by `base.failed_verdict`), a timeout only if every call timed out
            failures = [r.verdict for _, r in calls if r.ranking is None]
            first = next((v for v in failures if v.status != "timeout"), failures[0]) if failures else None
            if first is None:
                return msgspec.structs.replace(failed_verdict(JudgeError("no ranking succeeded")), **common)
            return msgspec.structs.replace(first, error="; ".join(errors), flags=tuple(sorted(flags)), cached=False, **common)
        mine = {pair: (o if pair[0] == local else 1.0 - o) for pair, o in merged.items() if local in pair}
        against_group = [o for pair, o in mine.items() if size not in pair]
        unstable = sum(flipped[pair] for pair in mine)
        if mine and unstable * 2 > len(mine):  # its standing moved with the order shown more often than not
            flags.add(Flag.POSITION_INCONSISTENT)
        if errors:
            flags.add(Flag.JUDGE_INCOMPLETE)
        criteria = {
            "win_rate": sum(against_group) / len(against_group) if against_group else 0.5,
            "comparisons": float(len(mine)),
            "position_inconsistent": float(unstable),
        }
        head = f"ranked with the {size - 1} other responses to this prompt in {len(done)} shuffled order(s)"
        if anchored and (local, size) in mine:
            criteria["beats_reference"] = mine[(local, size)]
            verdict = mine[(local, size)]
            head += "; " + ("above" if verdict == 1.0 else "below" if verdict == 0.0 else "level with") + " the reference answer"
        head += f"; won {criteria['win_rate']:.2f} of its comparisons with the group"
        rationale = head + (f". Judge: {done[0].rationale.strip()}" if done[0].rationale.strip() else ".")
        return Verdict(
            score=reward,
            status="ok",
            criteria=criteria,
            rationale=rationale[:4000],
            error=f"{len(errors)} of {len(calls)} listwise comparisons failed: {errors[0]}" if errors else None,
            flags=tuple(sorted(flags)),
            **common,
        )

    async def _rank(
        self, prompt: str, responses: list[str], reference: str | None, anchored: bool, deadline: float, fresh: bool
    ) -> _Ranked:
        """One ranking call: `reference` shown as the answer key; `anchored`: also ranked, as `R`."""
        verdict = await self.cached(
            ("listwise" if anchored else "listwise-unanchored", prompt, reference, *responses),
            lambda: self._ask_ranking(prompt, responses, reference, anchored, deadline),
            fresh=fresh,
        )
        return _Ranked.from_verdict(verdict)

    async def _ask_ranking(self, prompt: str, responses: list[str], reference: str | None, anchored: bool, deadline: float) -> Verdict:
        config = self.config
        labels = [str(n) for n in range(1, len(responses) + 1)] + ([REFERENCE_LABEL] if anchored else [])
        tool = Tool(LISTWISE_TOOL, "Record the ranking of the responses, best first, and why.", listwise_schema(labels))
        return await self.ask_verdict(
            lambda: listwise_prompt(
                criteria=config.criteria,
                prompt=prompt,
                responses=responses,
                reference=reference,
                rank_reference=anchored,
                max_chars=config.max_response_chars,
                structured=self.structured,
            ),
            tool,
            lambda payload: parse_ranking(payload, labels),
            _ranking_reading,
            deadline,
            f"listwise/{len(labels)}",  # the answer grows with the items ranked
        )

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

        def share(tokens: str) -> int:  # a comparison between two rollouts is paid half by each
            spent = [getattr(c, tokens) for c in comparisons]
            return sum(spent) // 2 if expected > 1 else spent[0]

        common: dict[str, Any] = dict(
            latency_ms=max((c.latency_ms for c in comparisons), default=0.0),
            input_tokens=share("input_tokens"),
            output_tokens=share("output_tokens"),
            cache_read_tokens=share("cache_read_tokens"),
            cache_write_tokens=share("cache_write_tokens"),
            flags=tuple(sorted(map(str, flags))),
        )
        errors = [c.error for c in comparisons if c.error]
        if reward is None or not done:
            status: Literal["timeout", "failed"] = "timeout" if comparisons and all(c.timed_out for c in comparisons) else "failed"
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
            cache_read_tokens=forward.cache_read_tokens + backward.cache_read_tokens,
            cache_write_tokens=forward.cache_write_tokens + backward.cache_write_tokens,
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
        verdict = await self.cached((prompt, a, b, reference), lambda: self._ask(prompt, a, b, deadline, reference), fresh=fresh)
        return _Ordered.from_verdict(verdict)

    async def _ask(self, prompt: str, a: str, b: str, deadline: float, reference: str | None) -> Verdict:
        config = self.config
        return await self.ask_verdict(
            lambda: preference_prompt(
                criteria=config.criteria,
                prompt=prompt,
                response_a=a,
                response_b=b,
                reference=reference,
                max_chars=config.max_response_chars,
                structured=self.structured,
            ),
            self._tool,
            parse_preference,
            _preference_reading,
            deadline,
            "pairwise",
        )


def _preference_reading(value: PreferenceAnswer) -> Reading:
    return Reading(score=_OUTCOME[value.winner], criteria={"winner_" + value.winner: 1.0}, rationale=value.rationale)


def _ranking_reading(value: RankingAnswer) -> Reading:
    """A ranking is kept in the verdict as `rank_<label>` = position (0 best), so it survives the
    cache; the score is the share of responses placed below the reference (1.0 without one)."""
    criteria = {f"rank_{label}": float(position) for position, label in enumerate(value.ranking)}
    below = len(value.ranking) - 1 - value.ranking.index(REFERENCE_LABEL) if REFERENCE_LABEL in value.ranking else None
    score = below / (len(value.ranking) - 1) if below is not None and len(value.ranking) > 1 else 1.0
    return Reading(score=score, criteria=criteria, rationale=value.rationale)


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
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

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
            cache_read_tokens=0 if cached else verdict.cache_read_tokens,
            cache_write_tokens=0 if cached else verdict.cache_write_tokens,
            latency_ms=verdict.latency_ms,
            flags=verdict.flags,
        )


@dataclass(frozen=True)
class _Ranked:
    """One listwise call's result, read back from the cached verdict: labels best first, or None."""

    ranking: tuple[str, ...] | None
    verdict: Verdict
    rationale: str
    error: str | None
    input_tokens: int
    output_tokens: int
    latency_ms: float
    flags: tuple[str, ...]
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @classmethod
    def from_verdict(cls, verdict: Verdict) -> _Ranked:
        ranking = None
        if verdict.status == "ok":
            ranks = sorted((position, key.removeprefix("rank_")) for key, position in verdict.criteria.items() if key.startswith("rank_"))
            ranking = tuple(label for _, label in ranks)
        cached = verdict.cached
        return cls(
            ranking=ranking,
            verdict=verdict,
            rationale=verdict.rationale,
            error=verdict.error,
            input_tokens=0 if cached else verdict.input_tokens,
            output_tokens=0 if cached else verdict.output_tokens,
            cache_read_tokens=0 if cached else verdict.cache_read_tokens,
            cache_write_tokens=0 if cached else verdict.cache_write_tokens,
            latency_ms=verdict.latency_ms,
            flags=verdict.flags,
        )
