"""The cost cascade end to end: a rule judge first, a Nova rubric judge over HTTP (the emulator,
unchanged aiobotocore) only where the rule cannot settle a rollout; the record, the summary, and
calibrate/probe calling every judge anyway."""

import asyncio
import json

import pytest

from farm.analysis.fitting import fit_judges
from farm.analysis.probes import run_probes
from farm.ensemble import Ensemble
from farm.scorefile import score_file
from farm.wire import parse_rollouts
from tests.conftest import RUBRIC, gsm8k_rollouts, make_config

pytestmark = pytest.mark.integration

LITE = "amazon.nova-lite-v1:0"
JUDGES = [{"name": "final_answer", "kind": "final_answer"}, RUBRIC]
CASCADE = {"escalate": {"enabled": True}}
SETTLED = {"id": "settled", "prompt": "What is 9*2?", "response": "9*2 = 18\nA: 18", "reference": "A: 18"}
OPEN = {"id": "open", "prompt": "What is 9*2?", "response": "9*2 = 18\nA: 18"}  # no reference: the rule cannot check it


def test_one_rollout_escalates_to_nova_over_http_and_one_does_not(aws_env, tmp_path):
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in (SETTLED, OPEN)))
    summary = asyncio.run(score_file(source, out, make_config(JUDGES, aggregation=CASCADE)))
    results = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}

    settled, escalated = results["settled"], results["open"]
    assert settled["escalation"] == {"final_answer": "ran", "rubric": "not_needed"}
    assert settled["status"] == "ok" and settled["reward"] == 1.0  # not needed is neither failed nor partial
    assert settled["judges"]["rubric"]["status"] == "skipped" and settled["judges"]["rubric"]["input_tokens"] == 0
    assert escalated["escalation"] == {"final_answer": "ran", "rubric": "no_reference"}
    assert escalated["judges"]["rubric"]["status"] == "ok" and escalated["judges"]["rubric"]["input_tokens"] > 0
    assert escalated["status"] == "ok" and escalated["reward"] == escalated["judges"]["rubric"]["score"]
    assert aws_env.stats()[LITE].received == 1  # one Converse call in all: the escalated rollout's

    assert summary.escalated == 1
    assert summary.as_dict()["escalation"] == {"final_answer": {"ran": 2}, "rubric": {"not_needed": 1, "no_reference": 1}}


def test_calibrate_and_probe_call_every_judge_and_report_the_cascade(aws_env):
    rows = gsm8k_rollouts(limit=4)  # 4 groups of 4
    for row in rows[:4]:
        row["reference"] = None  # one group the rule cannot check
    rollouts = parse_rollouts(rows)
    labels = [bool(row["metadata"]["is_correct"]) for row in rows]
    config = make_config(JUDGES, aggregation=CASCADE)

    async def main():
        ensemble = Ensemble.from_config(config)
        try:
            fitted = await fit_judges(ensemble, rollouts, labels)
            probed = await run_probes(ensemble, rollouts[4:8], ["injection_suffix"], labels=labels[4:8])
            return fitted, probed
        finally:
            await ensemble.aclose()

    fitted, probed = asyncio.run(main())
    assert fitted.judges["rubric"]["n"] == 16  # the expensive judge answered every row, not only the escalated ones
    assert fitted.cascade["escalated_share"] == 0.25
    assert fitted.cascade["cascade"]["auc"] is not None and fitted.cascade["all_judges"]["auc"] is not None
    assert probed.escalated == {"clean": 0.0, "injection_suffix": 0.0}  # the rule settles them: Nova never sees the attack
    assert probed.inflation["injection_suffix"]["rubric"]["n"] == 4  # yet the rubric judge was probed
