"""Defences applied at scoring time, around aggregation, that hold when an LLM judge is fooled.

- Length control: a judge with `length_correction` (written by `farm calibrate` where it measured
  a length slope) has slope × log2(length / pivot) taken off its score, like a length-controlled
  win rate: what the score would be at the pivot length. Only ever taken off: a response shorter
  than the pivot keeps its raw score (a bonus there would reward terseness).
- Group anchoring: a group-preference score is scaled by the rollout's verifiable score, so an
  all-wrong or content-free group cannot earn reward by relative position.
- Contradiction: a verifiable judge says wrong while an LLM judge says clearly right. It does
  not depend on the detector: whatever fooled the LLM judge, the disagreement shows.
- Re-render: a rollout the detector let through that carries a suspicious span (any single
  structural cue; `injection.suspicious_spans`) is scored again by its LLM judges with the spans
  removed. A raw score that drops by more than `integrity.rerender_threshold` means the span moved
  the judge: a contradiction too, with or without a verifiable judge (reference-only setups).
- Policy: a caught attack (detector hit or contradiction) gets `integrity.injection_policy`.

`rerender` (async, the only one that calls judges) and `prepare` run on verdicts before
aggregation, `screen` on each aggregated result. Pure
functions; the ensemble calls both, from one place each. The detector is pure Python (about
8 µs a character): it reads at most `SCAN_WINDOW` characters from each end of a response, which
covers all a judge sees with the default `max_response_chars` (24,000, head and tail kept), and a
batch with more than `OFF_LOOP_CHARS` of response text is screened in a worker thread
(`screen_off_loop`), so a long request cannot stall the ingress event loop and its health checks.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from farm.config import IntegrityConfig, JudgeConfig
from farm.flags import Flag
from farm.screening.injection import InjectionDetector, suspicious_spans, without_spans
from farm.screening.length import shift
from farm.screening.score_map import apply_score_map
from farm.wire import RewardResult, Rollout, Verdict

__all__ = [
    "LLM_KINDS",
    "OFF_LOOP_CHARS",
    "SCAN_WINDOW",
    "VERIFIABLE_KINDS",
    "correct_length",
    "prepare",
    "rerender",
    "rerendered_response",
    "scanned_text",
    "screen",
    "screen_off_loop",
    "verifiable_score",
]

VERIFIABLE_KINDS = frozenset({"final_answer", "exact_match", "regex", "json_schema"})
"""Judges that read no instruction: no text in the response can change their mind."""
LLM_KINDS = frozenset({"rubric", "preference", "reward_model"})
"""Judges that read the response as a model does, and so can be talked round."""

_DETECTOR = InjectionDetector()

SCAN_WINDOW = 32_768
"""Characters the detector reads from each end of a longer response (bounds its cost per response)."""
OFF_LOOP_CHARS = 16_384
"""A batch with more response text than this is screened in a worker thread, off the event loop."""


def scanned_text(response: str) -> str:
    """What the detector reads: the whole response, or its first and last `SCAN_WINDOW` characters."""
    if len(response) <= 2 * SCAN_WINDOW:
        return response
    return response[:SCAN_WINDOW] + "\n" + response[-SCAN_WINDOW:]


def screen_off_loop(rollouts: Sequence[Rollout]) -> bool:
    """Whether screening this batch costs enough (detector time grows with text) to leave the event loop."""
    return sum(len(r.response) for r in rollouts) > OFF_LOOP_CHARS


def correct_length(verdict: Verdict, response: str, config: JudgeConfig) -> Verdict:
    """The verdict with its length correction applied to the judge's raw score, then its score
    map if any (the uncorrected raw score kept in `criteria.length_uncorrected`)."""
    lc = config.length_correction
    if lc is None or verdict.score is None or verdict.status != "ok":
        return verdict
    raw = verdict.criteria.get("raw_score", verdict.score) if config.score_map is not None else verdict.score
    corrected = min(1.0, max(0.0, raw - shift(lc, len(response))))
    out = msgspec.structs.replace(verdict, score=corrected, criteria={**verdict.criteria, "length_uncorrected": raw})
    return apply_score_map(out, config.score_map) if config.score_map is not None else out


def verifiable_score(verdicts: dict[str, Verdict], members: Sequence[Any]) -> float | None:
    """Weighted mean of the verifiable judges that answered; None when there is none."""
    scored = [
        (verdicts[m.config.name].score, m.config.weight)
        for m in members
        if m.config.kind in VERIFIABLE_KINDS and m.config.name in verdicts and verdicts[m.config.name].score is not None
    ]
    total = sum(w for _, w in scored)
    if not scored or total <= 0:
        return None
    return sum(float(s) * w for s, w in scored if s is not None) / total


def prepare(
    rollouts: Sequence[Rollout], live: Sequence[int], verdicts: list[dict[str, Verdict]], members: Sequence[Any], integrity: IntegrityConfig
) -> None:
    """Length control and group anchoring, in place, on the verdicts of the `live` rollouts."""
    for i in live:
        for m in members:
            name = m.config.name
            if name in verdicts[i] and m.config.length_correction is not None:
                verdicts[i][name] = correct_length(verdicts[i][name], rollouts[i].response, m.config)
    if not integrity.anchor_group_preference:
        return
    groups: dict[str, list[int]] = defaultdict(list)
    for i in live:
        if (key := rollouts[i].group) is not None:
            groups[key].append(i)
    preference = [m for m in members if m.config.kind == "preference" and getattr(m.config, "mode", "auto") != "reference"]
    for indices in groups.values():
        if len(indices) < 2:
            continue
        for i in indices:
            anchor = verifiable_score(verdicts[i], members)
            if anchor is None:
                continue
            for m in preference:
                verdict = verdicts[i].get(m.config.name)
                if verdict is None or verdict.score is None:
                    continue
                verdicts[i][m.config.name] = msgspec.structs.replace(
                    verdict, score=verdict.score * anchor, criteria={**verdict.criteria, "unanchored_score": verdict.score}
                )


RERENDERED = "rerendered_score"
"""Verdict criterion: the judge's raw score for the response with its suspicious spans removed."""
RERENDERED_CHARS = "rerendered_chars"
"""Verdict criterion: the re-rendered response's length (both scores are length-controlled before comparing)."""


def rerendered_response(response: str) -> str | None:
    """The response without its suspicious spans, or None when it has none or the detector already
    caught it (the policy applies there without spending calls)."""
    text = scanned_text(response)
    spans = suspicious_spans(text)  # cheaper than the detector, and empty for most clean responses
    if not spans or _DETECTOR.matches(text):
        return None
    return without_spans(text, spans)


async def rerender(
    rollouts: Sequence[Rollout],
    live: Sequence[int],
    verdicts: list[dict[str, Verdict]],
    members: Sequence[Any],
    integrity: IntegrityConfig,
    judge_batch: Callable[[Any, list[Rollout]], Awaitable[list[Verdict]]],
) -> int:
    """Score suspicious rollouts again, without their suspicious spans, with every LLM judge; the raw
    score of the re-rendered response goes into the verdict's criteria (`rerendered_score`) for
    `screen` to compare. A group judge re-scores the group with the re-rendered responses in place
    (its cache answers the unchanged pairs). Returns the number of rollouts re-rendered."""
    if integrity.rerender == "off" or integrity.injection_policy == "off":
        return 0
    # the detector is pure Python: a long batch leaves the event loop (see screen_off_loop)
    candidates = [rollouts[i] for i in live]
    if screen_off_loop(candidates):
        stripped = await asyncio.to_thread(lambda: [rerendered_response(r.response) for r in candidates])
    else:
        stripped = [rerendered_response(r.response) for r in candidates]
    targets = {i: text for i, text in zip(live, stripped, strict=True) if text is not None}
    if not targets:
        return 0
    groups: dict[str, list[int]] = defaultdict(list)
    for i in live:
        if (key := rollouts[i].group) is not None:
            groups[key].append(i)

    async def again(member: Any) -> None:
        name = member.config.name
        wanted = [i for i in targets if (v := verdicts[i].get(name)) is not None and v.status == "ok" and v.score is not None]
        if not wanted:
            return
        batch_ids = list(wanted)
        if member.config.kind == "preference":  # its score is relative to the group: re-score the group
            for group in {key for i in wanted if (key := rollouts[i].group) is not None}:
                batch_ids += [j for j in groups[group] if j not in targets]
        batch = [msgspec.structs.replace(rollouts[j], response=targets.get(j, rollouts[j].response)) for j in batch_ids]
        answers = await judge_batch(member, batch)
        for i, answer in zip(batch_ids, answers, strict=True):
            if i in targets and answer.score is not None:
                verdict = verdicts[i][name]
                criteria = {**verdict.criteria, RERENDERED: float(answer.score), RERENDERED_CHARS: float(len(targets[i]))}
                verdicts[i][name] = msgspec.structs.replace(verdict, criteria=criteria)

    llm = [m for m in members if m.config.kind in LLM_KINDS]
    async with asyncio.TaskGroup() as group:
        for member in llm:
            group.create_task(again(member))
    return len(targets)


def _moved_by_span(rollout: Rollout, verdicts: dict[str, Verdict], members: Sequence[Any], threshold: float) -> bool:
    """An LLM judge whose raw score dropped by more than `threshold` once the suspicious spans went;
    with a length correction both scores are taken at the pivot length, so the shorter re-rendered
    response does not look like a drop to a length-biased judge."""
    for m in members:
        verdict = verdicts.get(m.config.name)
        if verdict is None or (again := verdict.criteria.get(RERENDERED)) is None or (raw := _own_score(verdict)) is None:
            continue
        if (lc := m.config.length_correction) is not None:
            raw -= shift(lc, len(rollout.response))
            again -= shift(lc, int(verdict.criteria.get(RERENDERED_CHARS, len(rollout.response))))
        if raw - again > threshold:
            return True
    return False


def _contradicts(verdicts: dict[str, Verdict], members: Sequence[Any], threshold: float | None) -> bool:
    if threshold is None:
        return False
    anchor = verifiable_score(verdicts, members)
    if anchor is None or anchor > 0.0:
        return False
    return any(
        m.config.kind in LLM_KINDS
        and (v := verdicts.get(m.config.name)) is not None
        and (own := _own_score(v)) is not None
        and own >= threshold
        for m in members
    )


def _own_score(verdict: Verdict) -> float | None:
    """What the judge itself said, before length correction and score map: a padded answer the
    judge rated clearly right is a contradiction even when the correction pulled its score down."""
    if verdict.score is None:
        return None
    return verdict.criteria.get("length_uncorrected", verdict.criteria.get("raw_score", verdict.score))


def screen(rollout: Rollout, result: RewardResult, members: Sequence[Any], integrity: IntegrityConfig) -> RewardResult:
    """Flag a caught attack (detector hit or judge contradiction) and apply the injection policy."""
    policy = integrity.injection_policy
    if policy == "off" or not rollout.response.strip():
        return result
    caught: set[str] = set()
    if _DETECTOR.matches(scanned_text(rollout.response)):
        caught.add(str(Flag.INJECTION_SUSPECTED))
    if _contradicts(result.judges, members, integrity.contradiction_threshold) or (
        integrity.rerender == "on" and _moved_by_span(rollout, result.judges, members, integrity.rerender_threshold)
    ):
        caught.add(str(Flag.JUDGE_CONTRADICTION))
    if not caught:
        return result
    reward = result.reward
    if reward is not None and policy == "penalise":
        reward = reward * (1.0 - integrity.injection_penalty)
    elif reward is not None and policy == "zero":
        reward = 0.0
    elif reward is not None and policy == "verifiable":
        anchor = verifiable_score(result.judges, members)
        reward = 0.0 if anchor is None else anchor * (1.0 - integrity.injection_penalty)
    flags = tuple(sorted({*result.flags, *caught}))
    return msgspec.structs.replace(result, reward=reward, flags=flags)
