"""Calibration against gold labels, and label-free reliability from inter-judge agreement."""

from __future__ import annotations

import asyncio
import random

import pytest

from farm.analysis.calibration import calibrate, dawid_skene, expected_calibration_error, fit_platt, weights_from_accuracy
from farm.ensemble import Ensemble
from farm.wire import parse_rollouts
from tests.conftest import gsm8k_rollouts, make_config

MICRO, LITE, PRO = "amazon.nova-micro-v1:0", "amazon.nova-lite-v1:0", "amazon.nova-pro-v1:0"
CRITERIA = [{"name": "correctness", "description": "The final answer is correct."}]


def test_ece_and_platt_on_synthetic_scores():
    rng = random.Random(0)
    labels = [rng.random() < 0.4 for _ in range(2000)]
    # says about 0.6 where no item is positive: overconfident
    overconfident = [min(1.0, 0.95 if y else 0.55 + 0.1 * rng.random()) for y in labels]
    assert expected_calibration_error(overconfident, labels) > 0.3
    a, b = fit_platt(overconfident, labels)
    result = calibrate(overconfident, labels)
    assert result is not None and result.ece_after_platt < 0.05 < result.ece and a > 0
    assert weights_from_accuracy({"good": 0.9, "chance": 0.5, "bad": 0.3}) == pytest.approx(
        {"good": 2.1972, "chance": 0.0, "bad": 0.0}, abs=1e-3
    )


def test_dawid_skene_ranks_judges_without_labels():
    rng = random.Random(1)
    truth = [rng.random() < 0.5 for _ in range(1000)]
    accuracy = {"sharp": 0.95, "good": 0.85, "decent": 0.75, "weak": 0.6, "coin": 0.5}
    votes = [{j: (t if rng.random() < acc else not t) for j, acc in accuracy.items()} for t in truth]
    estimated, posterior = dawid_skene(votes)
    assert estimated["sharp"] > estimated["good"] > estimated["decent"] > estimated["weak"] > estimated["coin"]
    assert all(abs(estimated[j] - acc) < 0.05 for j, acc in accuracy.items()), estimated
    assert sum((p >= 0.5) == t for p, t in zip(posterior, truth, strict=True)) / len(truth) > 0.93


@pytest.mark.integration
def test_calibration_figures_on_gsm8k_labels(aws_env, report):
    aws_env.update(models={MICRO: {"judge": {"noise": 0.45}}, LITE: {"judge": {"noise": 0.15}}, PRO: {"judge": {"noise": 0.05}}})
    config = make_config(
        [
            {"name": "answer", "kind": "final_answer"},
            {"name": "noisy", "kind": "rubric", "model": MICRO, "criteria": CRITERIA},
            {"name": "fair", "kind": "rubric", "model": LITE, "criteria": CRITERIA},
            {"name": "sharp", "kind": "rubric", "model": PRO, "criteria": CRITERIA},
        ]
    )
    rows = gsm8k_rollouts(limit=100)
    labels = [row["metadata"]["is_correct"] for row in rows]

    async def main():
        ensemble = Ensemble.from_config(config)
        try:
            return await ensemble.score(parse_rollouts(rows))
        finally:
            await ensemble.aclose()

    results = asyncio.run(main())
    judges = ["answer", "noisy", "fair", "sharp"]
    figures = {j: calibrate([r.judges[j].score for r in results], labels) for j in judges}
    for judge, figure in figures.items():
        report(f"calibration vs GSM8K is_correct, {judge}: {figure.as_dict()}")
    assert figures["answer"].accuracy == 1.0
    assert figures["sharp"].auc > figures["noisy"].auc
    votes = [{j: (r.judges[j].score >= 0.5) for j in judges} for r in results]
    label_free, _ = dawid_skene(votes)
    report(f"label-free (Dawid-Skene) estimated accuracy: { {j: round(a, 3) for j, a in label_free.items()} }")
    assert label_free["sharp"] > label_free["noisy"] and label_free["answer"] > label_free["noisy"]
    weights = weights_from_accuracy(label_free)
    assert weights["noisy"] < weights["sharp"]


def _noisy_judges(aws_env):
    aws_env.update(models={MICRO: {"judge": {"noise": 0.45}}, LITE: {"judge": {"noise": 0.15}}, PRO: {"judge": {"noise": 0.05}}})
    return [
        {"name": "answer", "kind": "final_answer", "gate": False},
        {"name": "noisy", "kind": "rubric", "model": MICRO, "criteria": CRITERIA},
        {"name": "fair", "kind": "rubric", "model": LITE, "criteria": CRITERIA},
        {"name": "sharp", "kind": "rubric", "model": PRO, "criteria": CRITERIA},
    ]


@pytest.mark.integration
@pytest.mark.parametrize("label_free", [False, True], ids=["labels", "label-free"])
def test_farm_calibrate_writes_maps_and_weights_the_ensemble_applies(aws_env, tmp_path, report, label_free):
    """`farm calibrate` end to end: fit on GSM8K, write a config, load it, and score with the maps applied."""
    import json

    import yaml
    from click.testing import CliRunner

    from farm.cli import main
    from farm.config import load_config

    judges = _noisy_judges(aws_env)
    source = tmp_path / "farm.yaml"
    source.write_text(yaml.safe_dump({"judges": judges, "bedrock": {"default_quota": {"rpm": 60000, "tpm": 100000000}}}))
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in gsm8k_rollouts(limit=60)))
    out, figures = tmp_path / "calibrated.yaml", tmp_path / "fit.json"
    args = ["calibrate", "--config", str(source), "--data", str(data), "--out", str(out), "--json", str(figures)]
    result = CliRunner().invoke(main, args + (["--label-free"] if label_free else []), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    fit = json.loads(figures.read_text())
    report(f"farm calibrate ({fit['source']}, 240 GSM8K rows): weights {fit['weights']}")
    report(f"farm calibrate ({fit['source']}): ensemble before {fit['ensemble_before']} after {fit['ensemble_after']}")
    calibrated = load_config(out)
    by_name = {j.name: j for j in calibrated.judges}
    assert all(by_name[name].score_map is not None for name in ("noisy", "fair", "sharp"))
    assert by_name["noisy"].weight < by_name["fair"].weight <= by_name["sharp"].weight
    assert fit["ensemble_after"]["ece"] < fit["ensemble_before"]["ece"]

    async def rescore():
        ensemble = Ensemble.from_config(calibrated)
        try:
            return await ensemble.score(parse_rollouts(gsm8k_rollouts(limit=5)))
        finally:
            await ensemble.aclose()

    for result in asyncio.run(rescore()):
        verdict = result.judges["fair"]
        m = by_name["fair"].score_map
        assert verdict.score == pytest.approx(1 / (1 + __import__("math").exp(-(m.a * verdict.criteria["raw_score"] + m.b))))


@pytest.mark.integration
def test_position_bias_and_human_agreement_on_hh_pairs(aws_env, report):
    from farm.analysis.bias import pair_figures
    from farm.analysis.pairs import read_pairs
    from tests.conftest import shared_file

    aws_env.update(models={MICRO: {"judge": {"position_bias": 0.6}}, PRO: {"judge": {"noise": 0.05}}})
    config = make_config(
        [
            {"name": "biased", "kind": "preference", "model": MICRO, "mode": "group"},
            {"name": "steady", "kind": "preference", "model": PRO, "mode": "group"},
        ]
    )
    pairs = read_pairs(shared_file("hh_harmless_base_test.jsonl.gz"), limit=100)

    async def main():
        ensemble = Ensemble.from_config(config)
        try:
            return await pair_figures(ensemble, pairs)
        finally:
            await ensemble.aclose()

    figures = asyncio.run(main())
    report(f"HH-RLHF pairs, both orders: {figures}")
    for figure in figures.values():  # one HH pair has an empty reply: skipped, never scored
        assert figure["pairs"] + figure["unjudged"] == 100 and figure["pairs"] >= 95
    assert figures["biased"]["position_inconsistency"] > 0.9 and figures["steady"]["position_inconsistency"] < 0.1
    assert figures["steady"]["calibration"]["n"] == 2 * figures["steady"]["pairs"]
    assert figures["biased"]["calibration"]["auc"] == 0.5  # every pair a tie: no signal about the human choice
