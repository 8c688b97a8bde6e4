"""Fit each judge's calibration map, ensemble weight and (where it is length-biased) length
correction from data, and write them into config.

With gold labels, each judge's Platt map is fitted to the labels and its weight is the
log-odds of its accuracy after the map. Without labels, Dawid–Skene estimates every judge's
accuracy from the judges' agreement with each other, and the maps are fitted to its
posterior (soft labels). Gate judges keep their raw scores and weights.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from farm.analysis.calibration import calibrate, dawid_skene, platt, weights_from_accuracy
from farm.cascade import as_cascaded, escalated
from farm.config import FarmConfig, LengthCorrection, ScoreMap
from farm.ensemble import Ensemble, EnsembleMember, combine
from farm.flags import Flag
from farm.screening.length import fit_length_correction, shift
from farm.screening.score_map import apply_score_map
from farm.stats import auc, expected_calibration_error
from farm.wire import RewardResult, Rollout, Verdict

__all__ = ["FitReport", "calibrated_config", "fit_judges", "format_fit"]


@dataclass
class FitReport:
    source: str
    """`labels` or `dawid_skene`."""
    rows: int
    judges: dict[str, dict[str, Any]] = field(default_factory=dict)
    maps: dict[str, ScoreMap] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    ensemble_before: dict[str, float | None] = field(default_factory=dict)
    ensemble_after: dict[str, float | None] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    length_corrections: dict[str, LengthCorrection] = field(default_factory=dict)
    """Judges found length-biased: the correction written into config (applied before the map)."""
    cascade: dict[str, Any] = field(default_factory=dict)
    """With `aggregation.escalate` on: every judge is still called (each needs its scores fitted);
    `escalated_share` is how many rows the cascade would have escalated, and `all_judges` /
    `cascade` the ensemble's figures (configured maps) with every judge and as the cascade scores."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rows": self.rows,
            "judges": self.judges,
            "maps": {name: m.model_dump(exclude_none=True) for name, m in self.maps.items()},
            "weights": self.weights,
            "ensemble_before": self.ensemble_before,
            "ensemble_after": self.ensemble_after,
            "skipped": self.skipped,
            "length_corrections": {name: c.model_dump(exclude_none=True) for name, c in self.length_corrections.items()},
            "cascade": self.cascade,
        }


async def fit_judges(
    ensemble: Ensemble, rollouts: Sequence[Rollout], labels: Sequence[bool] | None, *, described_as: str = "data"
) -> FitReport:
    """Score `rollouts` once and fit every non-gate judge; `labels` None means label-free. A cost
    cascade is overridden (every judge must answer to be fitted) and its behaviour reported."""
    results = await ensemble.score(rollouts, every_judge=True)
    voters = [m for m in ensemble.members if not m.config.gate]
    scores = {m.config.name: [_raw(r.judges[m.config.name]) for r in results] for m in voters}
    report = FitReport(source="labels" if labels is not None else "dawid_skene", rows=len(rollouts))
    targets: Sequence[float]
    if labels is not None:
        targets = [float(y) for y in labels]
    else:
        threshold = ensemble.aggregation.pass_threshold
        votes = [
            {name: (None if (score := s[i]) is None else score >= threshold) for name, s in scores.items()} for i in range(len(rollouts))
        ]
        estimated, posterior = dawid_skene(votes)
        targets = posterior
        for name, accuracy in estimated.items():
            report.judges.setdefault(name, {})["estimated_accuracy"] = round(accuracy, 4)
    lengths = [len(r.response) for r in rollouts]
    for member in voters:
        name = member.config.name
        correction = fit_length_correction(scores[name], lengths, [t >= 0.5 for t in targets], described_as=described_as)
        if correction is not None:
            report.length_corrections[name] = correction
            scores[name] = [_corrected(s, correction, n) for s, n in zip(scores[name], lengths, strict=True)]
    accuracies: dict[str, float] = {}
    for member in voters:
        name = member.config.name
        fitted = calibrate(scores[name], targets)
        if fitted is None:
            report.skipped[name] = "fewer than 10 scored rows"
            continue
        score_map = ScoreMap(
            a=round(fitted.platt[0], 4), b=round(fitted.platt[1], 4), fitted_on=f"{described_as} ({fitted.n} rows, {report.source})"
        )
        report.maps[name] = score_map
        figures = report.judges.setdefault(name, {})
        figures.update(fitted.as_dict())
        mapped = [(platt(s, score_map.a, score_map.b), t) for s, t in zip(scores[name], targets, strict=True) if s is not None]
        after_map = sum((m >= 0.5) == (t >= 0.5) for m, t in mapped) / len(mapped)
        figures["accuracy_after_map"] = round(after_map, 4)
        # against soft labels, the judge's own accuracy is Dawid-Skene's estimate
        accuracies[name] = after_map if labels is not None else figures["estimated_accuracy"]
    report.weights = {name: round(w, 3) for name, w in weights_from_accuracy(accuracies).items()}
    if report.weights and not any(report.weights.values()):
        report.skipped["weights"] = "every judge measured at chance or worse; weights left unchanged"
        report.weights = {}
    report.ensemble_before = _ensemble_figures([r.reward for r in results], targets)
    after = _recombine(ensemble, rollouts, results, report)
    report.ensemble_after = _ensemble_figures(after, targets)
    if any(r.escalation is not None for r in results):
        report.cascade = _cascade_figures(ensemble, rollouts, results, targets)
    return report


def _cascade_figures(
    ensemble: Ensemble, rollouts: Sequence[Rollout], results: Sequence[RewardResult], targets: Sequence[float]
) -> dict[str, Any]:
    """What the cascade would have done on these rows, and the ensemble with every judge against it."""
    every, cascaded = [], []
    for rollout, result in zip(rollouts, results, strict=True):
        view = as_cascaded(result)
        if view is None:  # gated, empty: no judge beyond the gate ran either way
            every.append(result.reward)
            cascaded.append(result.reward)
            continue
        verdicts, record = view
        every.append(combine(rollout, dict(result.judges), ensemble.members, ensemble.aggregation).reward)
        cascaded.append(combine(rollout, verdicts, ensemble.members, ensemble.aggregation, escalation=record).reward)
    return {
        "escalated_share": round(sum(escalated(r) for r in results) / len(results), 4) if results else None,
        "all_judges": _ensemble_figures(every, targets),
        "cascade": _ensemble_figures(cascaded, targets),
    }


def _raw(verdict: Verdict) -> float | None:
    """The judge's own score, before any length correction or score map already in the config."""
    if verdict.score is None:
        return None
    return verdict.criteria.get("length_uncorrected", verdict.criteria.get("raw_score", verdict.score))


def _corrected(score: float | None, correction: LengthCorrection | None, length: int) -> float | None:
    if score is None or correction is None:
        return score
    return min(1.0, max(0.0, score - shift(correction, length)))


def _recombine(ensemble: Ensemble, rollouts: Sequence[Rollout], results: Sequence[RewardResult], report: FitReport) -> list[float | None]:
    """The ensemble's rewards had the new maps and weights been in place (no new judge calls)."""
    members = []
    for m in ensemble.members:
        update: dict[str, Any] = {}
        if m.config.name in report.weights:
            update["weight"] = report.weights[m.config.name]
        members.append(EnsembleMember(m.config.model_copy(update=update), m.judge))
    rewards = []
    for rollout, result in zip(rollouts, results, strict=True):
        if result.status == "failed" or any(f in result.flags for f in (Flag.GATE_FAILED, Flag.EMPTY_RESPONSE)):
            rewards.append(result.reward)
            continue
        verdicts = {}
        for name, verdict in result.judges.items():
            score_map = report.maps.get(name)
            raw = _corrected(_raw(verdict), report.length_corrections.get(name), len(rollout.response))
            unmapped = msgspec.structs.replace(verdict, score=raw)
            verdicts[name] = verdict if score_map is None or raw is None else apply_score_map(unmapped, score_map)
        rewards.append(combine(rollout, verdicts, members, ensemble.aggregation).reward)
    return rewards


def _ensemble_figures(rewards: Sequence[float | None], targets: Sequence[float]) -> dict[str, float | None]:
    pairs = [(float(r), t) for r, t in zip(rewards, targets, strict=True) if r is not None]
    if not pairs:
        return {"accuracy": None, "auc": None, "ece": None}
    s, y = [p[0] for p in pairs], [p[1] for p in pairs]
    area = auc(s, [t >= 0.5 for t in y])
    return {
        "accuracy": round(sum((a >= 0.5) == (b >= 0.5) for a, b in pairs) / len(pairs), 4),
        "auc": None if area is None else round(area, 4),
        "ece": round(expected_calibration_error(s, y), 4),
    }


def calibrated_config(raw: Mapping[str, Any], config: FarmConfig, report: FitReport) -> dict[str, Any]:
    """`raw` (the config file as written) with each fitted judge's `score_map` and `weight` set."""
    out = copy.deepcopy(dict(raw))
    by_name = {j["name"]: j for j in out.get("judges", []) if isinstance(j, dict)}
    for judge in config.judges:
        entry = by_name.get(judge.name)
        if entry is None:
            continue
        if judge.name in report.maps:
            entry["score_map"] = report.maps[judge.name].model_dump(exclude_none=True)
        if judge.name in report.weights:
            entry["weight"] = report.weights[judge.name]
        if judge.name in report.length_corrections:
            entry["length_correction"] = report.length_corrections[judge.name].model_dump(exclude_none=True)
    return out


def format_fit(report: FitReport) -> str:
    head = f"{'judge':<16}{'n':>6}{'acc':>8}{'AUC':>8}{'ECE':>8}{'ECE map':>9}{'acc map':>9}{'est acc':>9}{'weight':>8}"
    lines = [f"calibration against {report.source} on {report.rows} rows", head]

    def cell(value: Any, width: int) -> str:
        return (f"{value:.3f}" if isinstance(value, float) else "-" if value is None else str(value)).rjust(width)

    for name, f in report.judges.items():
        lines.append(
            name[:15].ljust(16)
            + cell(f.get("n"), 6)
            + cell(f.get("accuracy"), 8)
            + cell(f.get("auc"), 8)
            + cell(f.get("ece"), 8)
            + cell(f.get("ece_after_platt"), 9)
            + cell(f.get("accuracy_after_map"), 9)
            + cell(f.get("estimated_accuracy"), 9)
            + cell(report.weights.get(name), 8)
        )
    lines.append(f"ensemble before: {_figures(report.ensemble_before)}")
    lines.append(f"ensemble after:  {_figures(report.ensemble_after)}")
    if report.cascade:
        cascade = report.cascade
        lines.append(f"cascade: every judge called to fit it; the cascade would escalate {cascade['escalated_share']:.1%} of rows")
        lines.append(f"  all judges: {_figures(cascade['all_judges'])}; as the cascade scores: {_figures(cascade['cascade'])}")
    for name, c in report.length_corrections.items():
        lines.append(f"length-biased {name}: {c.slope:+.3f} per doubling, corrected around {c.pivot_chars} chars")
    for name, why in report.skipped.items():
        lines.append(f"skipped {name}: {why}")
    return "\n".join(lines)


def _figures(values: dict[str, Any] | None) -> str:
    """`accuracy 0.950, auc 0.990` rather than a Python dict in text meant for people."""
    if not values:
        return "n/a"
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {'n/a' if v is None else v}" for k, v in values.items())
