"""Admission control at the ingress: refuse at once the work the quota cannot serve in time.

A request needs a known number of Bedrock calls per model, each reserving its input plus its
`maxTokens` against tokens per minute: one call per rollout for a rubric judge; for a preference
judge what it really sends (listwise: `listwise_orders` calls per group, more when a group is cut
into chunks; pairwise: the capped comparisons and the reference, both orders; a rollout alone:
both orders against its reference). Work already admitted holds its calls and tokens until it
finishes. If the backlog plus this request would take the quota longer than the judges'
deadline, in tokens against `tpm` or in requests against `rpm` (when the quota sets one),
whichever binds, the request is refused with HTTP 503 and a Retry-After that says when the
backlog will have drained enough, instead of being accepted and answered with partial rewards.
The rates are the quota actor's learned ones (configured quota times its ceiling), so a quota
learned lower than configured also admits less.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from farm.bedrock import ConverseRequest
from farm.config import FarmConfig, PreferenceJudgeConfig, RubricJudgeConfig
from farm.judges import needs_bedrock
from farm.judges.preference import list_orders, opponent_pairs, shared_reference
from farm.prompting import listwise_prompt, listwise_schema, preference_prompt, preference_schema, rubric_prompt, rubric_schema
from farm.wire import Rollout, prompt_text

__all__ = ["Admission", "Need", "Refused", "Ticket", "calls_needed", "needed"]

_Key = tuple[str, str]


class Refused(Exception):
    """The request cannot be served before its deadline; `status` 503 (try later) or 413 (never)."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Need:
    """What scoring a request takes from one (model, region) quota: calls, and the tokens they
    reserve when they start (input estimate + `maxTokens`)."""

    calls: int = 0
    tokens: int = 0

    def __add__(self, other: Need) -> Need:
        return Need(self.calls + other.calls, self.tokens + other.tokens)


@dataclass(frozen=True)
class Ticket:
    calls: dict[_Key, int]
    tokens: dict[_Key, int] = field(default_factory=dict)


class _Overheads:
    """Tokens a judge's call reserves beyond the texts it carries (instructions, criteria, fences,
    tool schema) and the `maxTokens` it is sent: measured once per (judge, kind, items) by
    rendering the judge's own prompt with empty texts, so it follows the prompt templates."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, int], int] = {}

    def __call__(self, judge: RubricJudgeConfig | PreferenceJudgeConfig, kind: str, items: int) -> int:
        key = (judge.name, kind, items)
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = _render_overhead(judge, kind, items)
        return found


def _render_overhead(judge: RubricJudgeConfig | PreferenceJudgeConfig, kind: str, items: int) -> int:
    structured = judge.structured_output == "tool"
    schema: Any
    if isinstance(judge, RubricJudgeConfig):
        prompt = rubric_prompt(
            task=judge.task, prompt="", response="", reference="", criteria=judge.criteria, max_chars=100, structured=structured
        )
        schema = rubric_schema(judge.criteria)
    elif kind == "listwise":
        labels = [str(n) for n in range(1, items + 1)]
        prompt = listwise_prompt(
            criteria=judge.criteria, prompt="", responses=[""] * items, reference="", max_chars=100, structured=structured
        )
        schema = listwise_schema(labels)
    else:
        prompt = preference_prompt(
            criteria=judge.criteria, prompt="", response_a="", response_b="", reference="", max_chars=100, structured=structured
        )
        schema = preference_schema()
    request = ConverseRequest(
        model=judge.model,
        user_text=prompt.user,
        user_prefix=prompt.prefix,
        system_text=prompt.system,
        max_tokens=judge.max_tokens_ceiling,
        tool_schema=schema if structured else None,
    )
    return request.token_estimate()


def _calls(judge: RubricJudgeConfig | PreferenceJudgeConfig, rollouts: Sequence[Rollout]) -> Iterator[tuple[str, int, int]]:
    """(kind, items shown, characters of text carried) of every call `judge` makes for
    `rollouts` before any cache hit or retry: the same plan the judge itself follows."""
    clip = judge.max_response_chars

    def chars(text: str | None) -> int:
        return min(len(text), clip) if text else 0

    if isinstance(judge, RubricJudgeConfig):
        for rollout in rollouts:
            yield "rubric", 1, chars(prompt_text(rollout.prompt)) + chars(rollout.response) + chars(rollout.reference)
        return
    groups: dict[str, list[Rollout]] = defaultdict(list)
    for rollout in rollouts:
        if rollout.group is not None:
            groups[rollout.group].append(rollout)
    for rollout in rollouts:
        grouped = rollout.group is not None and len(groups[rollout.group]) >= 2 and judge.mode != "reference"
        if not grouped and judge.mode != "group" and rollout.reference is not None:
            text = chars(prompt_text(rollout.prompt)) + chars(rollout.response) + chars(rollout.reference)
            yield from (("pairwise", 2, text),) * 2  # both orders against the reference
    if judge.mode == "reference":
        return
    for members in groups.values():
        size = len(members)
        if size < 2:
            continue
        shared = shared_reference([m.reference for m in members])
        anchored = shared is not None and judge.anchor == "reference"
        common = chars(prompt_text(members[0].prompt)) + chars(shared)
        responses = [chars(m.response) for m in members]
        if judge.comparison == "listwise":  # the judge's own plan; chunk sizes do not depend on the order's seed
            for order in list_orders(size, judge.listwise_orders, judge.max_list_items, seed=""):
                for chunk in order:
                    yield "listwise", len(chunk) + anchored, common + sum(responses[i] for i in chunk)
        else:
            pairs = opponent_pairs(size, judge.max_comparisons)
            texts = responses + ([chars(shared)] if anchored else [])
            if anchored:
                pairs = pairs + [(i, size) for i in range(size)]
            for i, j in pairs:
                yield from (("pairwise", 2, common + texts[i] + texts[j]),) * 2


def needed(
    config: FarmConfig,
    rollouts: Sequence[Rollout],
    overheads: _Overheads | None = None,
    sized: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[_Key, Need]:
    """Calls and reserved tokens per (model, region) that scoring `rollouts` takes, before any
    cache hit or retry. A call reserves its input estimate plus the `maxTokens` it will be sent:
    `sized[judge][kind]` when the judge's replicas said what they send now (`max_tokens: auto`),
    else the most it may be sent (a pinned value, or the auto ceiling)."""
    overheads = overheads or _Overheads()
    out: dict[_Key, Need] = {}
    for judge in config.judges:
        if not needs_bedrock(judge) or not isinstance(judge, RubricJudgeConfig | PreferenceJudgeConfig):
            continue
        key = (judge.model, judge.region or config.bedrock.region)
        limits = (sized or {}).get(judge.name, {})
        calls = tokens = 0
        for kind, items, text in _calls(judge, rollouts):
            calls += 1
            limit = limits.get(f"listwise/{items}" if kind == "listwise" else kind)
            reserve = judge.max_tokens_ceiling if limit is None else min(limit, judge.max_tokens_ceiling)
            tokens += overheads(judge, kind, items) - judge.max_tokens_ceiling + reserve + text // 4
        if calls:
            out[key] = out.get(key, Need()) + Need(calls, tokens)
    return out


def calls_needed(config: FarmConfig, rollouts: Sequence[Rollout]) -> dict[_Key, int]:
    """Bedrock calls per (model, region) that scoring `rollouts` takes, before any cache hit."""
    return {key: need.calls for key, need in needed(config, rollouts).items()}


class Admission:
    def __init__(
        self,
        config: FarmConfig,
        *,
        headroom: float = 0.8,
        refresh_s: float = 2.0,
        limits: Callable[[str], Awaitable[Mapping[str, int]]] | None = None,
    ):
        """`limits(judge)`: the `maxTokens` a judge's replica sends now per kind of call (its
        `stats()["max_tokens"]`), read at most every `refresh_s`; without it (or before a replica
        answers) a call of a `max_tokens: auto` judge is budgeted at its ceiling."""
        self.config = config
        self._limits = limits
        self._sized: dict[str, tuple[Mapping[str, int], float]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self.headroom = headroom
        self.refresh_s = refresh_s
        self.in_flight: Counter[_Key] = Counter()
        """Calls admitted and not yet finished, per (model, region)."""
        self.in_flight_tokens: Counter[_Key] = Counter()
        """Tokens those calls reserve (input estimate + `maxTokens`)."""
        self._rates: dict[_Key, tuple[tuple[float | None, float], float]] = {}
        self._budget: dict[_Key, float] = {}
        self._overheads = _Overheads()
        for judge in config.judges:
            if needs_bedrock(judge):
                key = (judge.model, judge.region or config.bedrock.region)  # type: ignore[union-attr]
                self._budget[key] = min(self._budget.get(key, math.inf), judge.deadline_s * headroom)

    async def admit(self, rollouts: Sequence[Rollout]) -> Ticket:
        if not self.config.serve.admission:
            return Ticket({})
        auto = [j.name for j in self.config.judges if needs_bedrock(j) and getattr(j, "max_tokens", None) == "auto"]
        sized = {name: await self.sized(name) for name in auto}  # never waits: no await between check and booking
        needs = needed(self.config, rollouts, self._overheads, sized)
        # Read every rate first: no await may come between the check and booking the calls, or
        # requests arriving together would all be checked against the same backlog.
        rates = {key: await self.rates(*key) for key in needs}
        for key, need in needs.items():
            requests_per_s, tokens_per_s = rates[key]
            budget = self._budget[key]
            limits = [(need.tokens, self.in_flight_tokens[key], tokens_per_s, "tokens", "tokens/min")]
            if requests_per_s is not None:
                limits.append((need.calls, self.in_flight[key], requests_per_s, "calls", "requests/min"))
            for amount, _ahead, rate, unit, per_min in limits:
                if amount / rate > budget:
                    raise Refused(
                        413,
                        f"this request needs {amount} {unit} of {key[0]} ({need.calls} calls), more than its quota serves within the "
                        f"judges' deadline ({rate * budget:.0f} at {rate * 60:.0f} {per_min}); split the batch",
                    )
            wait = max((ahead + amount) / rate - budget for amount, ahead, rate, _, _ in limits)
            if wait > 0:
                amount, ahead, rate, unit, per_min = max(limits, key=lambda lim: (lim[1] + lim[0]) / lim[2])
                raise Refused(
                    503,
                    f"the quota of {key[0]} is booked: {ahead} {unit} admitted ahead of this request's {amount} "
                    f"at {rate * 60:.0f} {per_min} would not finish within the deadline; retry after {math.ceil(wait)}s",
                    retry_after_s=max(1, math.ceil(wait)),
                )
        calls = {key: need.calls for key, need in needs.items()}
        tokens = {key: need.tokens for key, need in needs.items()}
        self.in_flight.update(calls)
        self.in_flight_tokens.update(tokens)
        return Ticket(calls, tokens)

    def release(self, ticket: Ticket) -> None:
        self.in_flight.subtract(ticket.calls)
        self.in_flight_tokens.subtract(ticket.tokens)

    async def sized(self, judge: str) -> Mapping[str, int]:
        """The judge's sized `maxTokens` per kind of call, as its replica last said ({} unknown).
        Never waits on a replica (one may be busy with the very work being admitted): a stale
        answer is refreshed in the background, at most every `refresh_s`, and used from then on."""
        if self._limits is None:
            return {}
        cached = self._sized.get(judge)
        now = time.monotonic()
        if (cached is None or now - cached[1] >= self.refresh_s) and judge not in self._refreshing:
            self._sized[judge] = (cached[0] if cached else {}, now)
            task = asyncio.get_running_loop().create_task(self._refresh(judge))
            self._refreshing[judge] = task
            task.add_done_callback(lambda _: self._refreshing.pop(judge, None))
        return self._sized[judge][0] if judge in self._sized else {}

    async def _refresh(self, judge: str) -> None:
        assert self._limits is not None
        try:
            limits = dict(await asyncio.wait_for(self._limits(judge), 5.0))
        except Exception:  # noqa: BLE001 - no replica answer: keep what was known (the ceiling before anything was)
            return
        self._sized[judge] = (limits, time.monotonic())

    async def rates(self, model: str, region: str) -> tuple[float | None, float]:
        """(requests/s or None when the quota sets no rpm, tokens/s) the quota serves: the quota
        actor's learned rates, read at most every `refresh_s`, else the configured quota."""
        key = (model, region)
        cached = self._rates.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self.refresh_s:
            return cached[0]
        quota = self.config.quota_for(model, region)
        scale = 1.0
        snapshot = await _snapshot(model, region)
        if snapshot is not None:
            scale = float(snapshot.get("ceiling", 1.0))
            # the actor holds the newest deployment's quota; its rpm is the effective one, so only where one is set
            rpm = int(snapshot.get("rpm", quota.rpm or 0)) if quota.rpm is not None else None
            quota = quota.model_copy(update={"tpm": int(snapshot.get("tpm", quota.tpm)), "rpm": rpm})
        requests = quota.rpm / 60.0 * scale if quota.rpm is not None else None
        rates = (requests, quota.tpm / 60.0 * scale)
        self._rates[key] = (rates, now)
        return rates


async def _snapshot(model: str, region: str) -> dict[str, Any] | None:
    import ray

    from actors.quota import NAMESPACE, quota_actor_name

    try:
        # `get_actor` is a blocking GCS call: off the ingress loop, and bounded like the snapshot
        actor = await asyncio.wait_for(asyncio.to_thread(ray.get_actor, quota_actor_name(model, region), namespace=NAMESPACE), 0.5)
        return await asyncio.wait_for(_awaited(actor.snapshot.remote()), 0.5)
    except Exception:  # noqa: BLE001 - no actor yet, or busy: the configured quota stands in
        return None


async def _awaited(ref: Any) -> Any:
    return await ref
