"""Defences applied at scoring time, around aggregation, that hold when an LLM judge is fooled.

- Length control: a judge with `length_correction` (written by `farm calibrate` where it measured
  a length slope) has slope × log2(length / pivot) taken off its score, like a length-controlled
  win rate: what the score would be at the pivot length. Only ever taken off: a response shorter
  than the pivot keeps its raw score (a bonus there would reward terseness).
- Group anchoring: a group-preference score is scaled by the rollout's verifiable score, so an
  all-wrong or content-free group cannot earn reward by relative position.
- Contradiction: a verifiable judge says wrong while an LLM judge says clearly right. It does
  not depend on the detector: whatever fooled the LLM judge, the disagreement shows.
- Policy: a caught attack (detector hit or contradiction) gets `integrity.injection_policy`.

`prepare` runs on verdicts before aggregation, `screen` on each aggregated result. Pure
functions; the ensemble calls both, from one place each. The detector is pure Python (about
8 µs a character): it reads at most `SCAN_WINDOW` characters from each end of a response, which
covers all a judge sees with the default `max_response_chars` (24,000, head and tail kept), and a
batch with more than `OFF_LOOP_CHARS` of response text is screened in a worker thread
(`screen_off_loop`), so a long request cannot stall the ingress event loop and its health checks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import msgspec

from farm.config import IntegrityConfig, JudgeConfig
from farm.flags import Flag
from farm.integrity.calibration import apply_score_map
from farm.integrity.injection import InjectionDetector
from farm.integrity.length import shift
from farm.wire import RewardResult, Rollout, Verdict

__all__ = [
    "LLM_KINDS",
    "OFF_LOOP_CHARS",
    "SCAN_WINDOW",
    "VERIFIABLE_KINDS",
    "correct_length",
    "prepare",
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
        if (group := rollouts[i].group) is not None:
            groups[group].append(i)
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
    if _contradicts(result.judges, members, integrity.contradiction_threshold):
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
