"""Bias figures beside the probes: position bias and human agreement of preference judges on
pairs with a human choice, and self-consistency (spread over repeated calls of one judge on
one rollout, which temperature 0 does not make zero on real models)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from farm.analysis.calibration import calibrate
from farm.analysis.pairs import PreferencePair
from farm.ensemble import Ensemble
from farm.stats import population_std
from farm.wire import Rollout, mark_fresh

__all__ = ["pair_figures", "self_consistency"]


def _pair_rollouts(pairs: Sequence[PreferencePair]) -> list[Rollout]:
    out = []
    for pair in pairs:
        for side in ("chosen", "rejected"):
            out.append(Rollout(id=f"{pair.id}/{side}", prompt=pair.prompt, response=getattr(pair, side), group=pair.id))
    return out


async def pair_figures(ensemble: Ensemble, pairs: Sequence[PreferencePair]) -> dict[str, dict[str, Any]]:
    """For each preference judge that compares within groups: each pair judged in both orders
    (the judge always does), the share of order-dependent comparisons, agreement with the
    human choice (a tie counts half), and calibration against it (chosen replies labelled 1,
    rejected 0: accuracy, AUC, ECE, Platt map)."""
    members = [m for m in ensemble.members if m.config.kind == "preference" and getattr(m.config, "mode", "") != "reference"]
    if not members or not pairs:
        return {}
    sub = Ensemble(
        members, ensemble.aggregation, integrity=ensemble.integrity.model_copy(update={"injection_policy": "off"}), patient=ensemble.patient
    )
    results = await sub.score(_pair_rollouts(pairs))
    out: dict[str, dict[str, Any]] = {}
    for member in members:
        name = member.config.name
        judged = inconsistent = unjudged = 0
        agreement: list[float] = []
        side_scores: list[float] = []
        for chosen, rejected in zip(results[0::2], results[1::2], strict=True):
            vc, vr = chosen.judges[name], rejected.judges[name]
            if vc.status != "ok" or vr.status != "ok" or vc.score is None or vr.score is None:
                unjudged += 1  # a judge failure, or a pair with an empty side (skipped, never scored 0)
                continue
            judged += int(vc.criteria.get("comparisons", 1.0))
            inconsistent += int(vc.criteria.get("position_inconsistent", 0.0))
            agreement.append(1.0 if vc.score > vr.score else 0.5 if vc.score == vr.score else 0.0)
            side_scores += [vc.score, vr.score]
        fitted = calibrate(side_scores, [1.0, 0.0] * (len(side_scores) // 2))
        out[name] = {
            "pairs": len(agreement),
            "unjudged": unjudged,
            "position_inconsistency": round(inconsistent / judged, 4) if judged else None,
            "human_agreement": round(sum(agreement) / len(agreement), 4) if agreement else None,
            "ties": round(sum(a == 0.5 for a in agreement) / len(agreement), 4) if agreement else None,
            "calibration": fitted.as_dict() if fitted is not None else None,
        }
    return out


async def self_consistency(ensemble: Ensemble, rollouts: Sequence[Rollout], repeats: int = 3) -> dict[str, dict[str, Any]]:
    """Score the same rollouts `repeats` times, bypassing caches: per judge, the mean standard
    deviation of a rollout's score and the share of rollouts whose score changed at all."""
    if repeats < 2 or not rollouts:
        return {}
    fresh = [mark_fresh(r, group=None) for r in rollouts]
    runs = [await ensemble.score(fresh) for _ in range(repeats)]
    out: dict[str, dict[str, Any]] = {}
    for member in ensemble.members:
        name = member.config.name
        spreads: list[float] = []
        changed = 0
        for index in range(len(fresh)):
            scores = [run[index].judges[name].score for run in runs]
            values = [s for s in scores if s is not None]
            if len(values) < 2:
                continue
            spreads.append(population_std(values))
            changed += max(values) - min(values) > 1e-9
        if spreads:
            out[name] = {
                "repeats": repeats,
                "rollouts": len(spreads),
                "mean_std": round(sum(spreads) / len(spreads), 4),
                "share_changed": round(changed / len(spreads), 4),
            }
    return out
