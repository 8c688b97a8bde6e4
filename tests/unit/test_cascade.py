"""The cost cascade: the escalate rule's decisions, the ensemble running tiers, config errors."""

import asyncio

import pytest

from farm.cascade import Reason, escalated, escalation_reason, escalations, reached
from farm.config import AggregationConfig, EscalateConfig, parse_config
from farm.ensemble import Ensemble, EnsembleMember
from farm.errors import ConfigError, JudgeError
from farm.flags import Flag
from farm.judges import skipped_verdict
from farm.testing import FakeJudge
from farm.wire import Verdict, parse_rollout

ON = EscalateConfig(enabled=True)
AGG = AggregationConfig(escalate=ON)


def rollout(i: int = 0, *, reference: str | None = "A: 18", group: str | None = None):
    return parse_rollout({"id": f"r{i}", "prompt": "p", "response": f"answer {i}", "reference": reference, "group": group})


def configs(*costs: str, kind: str = "length"):
    return parse_config({"judges": [{"name": f"j{k}", "kind": kind, "cost": c} for k, c in enumerate(costs)]}).judges


def ok(score: float) -> Verdict:
    return Verdict(score=score, status="ok")


# --- the rule, one decision at a time ---------------------------------------------------------


def test_confident_cheap_judge_settles_the_rollout():
    (rule,) = configs("free")
    assert escalation_reason(rollout(), {"j0": ok(1.0)}, [rule], ON, AGG) is None
    assert escalation_reason(rollout(), {"j0": ok(0.0)}, [rule], ON, AGG) is None


def test_score_inside_the_band_is_uncertain_and_the_band_is_open():
    (rule,) = configs("free")
    assert escalation_reason(rollout(), {"j0": ok(0.5)}, [rule], ON, AGG) == Reason.UNCERTAIN
    assert escalation_reason(rollout(), {"j0": ok(0.8)}, [rule], ON, AGG) is None  # the edge is not inside
    off = EscalateConfig(enabled=True, uncertain=None)
    assert escalation_reason(rollout(), {"j0": ok(0.5)}, [rule], off, AGG) is None


def test_disagreeing_cheap_judges_escalate():
    a, b = configs("free", "cheap")
    verdicts = {"j0": ok(1.0), "j1": ok(0.1)}
    assert escalation_reason(rollout(), verdicts, [a, b], ON, AGG) == Reason.DISAGREE
    calm = EscalateConfig(enabled=True, max_spread=0.95, uncertain=None)
    assert escalation_reason(rollout(), verdicts, [a, b], calm, AGG) is None


def test_no_reference_and_abstaining_rule_escalate():
    a, b = configs("free", "free")
    assert escalation_reason(rollout(reference=None), {"j0": ok(1.0)}, [a], ON, AGG) == Reason.NO_REFERENCE
    skipped = {"j0": skipped_verdict("final-answer judging needs a reference"), "j1": ok(1.0)}
    assert escalation_reason(rollout(), skipped, [a, b], ON, AGG) == Reason.UNDECIDED
    failed = {"j0": Verdict(score=None, status="failed", error="JudgeError: x"), "j1": ok(1.0)}
    assert escalation_reason(rollout(), failed, [a, b], ON, AGG) == Reason.UNDECIDED
    lenient = EscalateConfig(enabled=True, undecided=False, no_reference=False)
    assert escalation_reason(rollout(), skipped, [a, b], lenient, AGG) is None  # j1 alone is confident
    assert escalation_reason(rollout(reference=None), {"j0": ok(1.0)}, [a], lenient, AGG) is None


def test_nobody_scored_always_escalates():
    (a,) = configs("free")
    lenient = EscalateConfig(enabled=True, undecided=False, no_reference=False)
    assert escalation_reason(rollout(), {"j0": skipped_verdict("no")}, [a], lenient, AGG) == Reason.UNDECIDED


def test_group_scope_pulls_the_whole_group_along():
    (a,) = configs("free")
    rollouts = [rollout(0, group="g"), rollout(1, group="g"), rollout(2, group="h")]
    verdicts = [{"j0": ok(0.5)}, {"j0": ok(1.0)}, {"j0": ok(1.0)}]
    assert escalations(rollouts, [0, 1, 2], verdicts, [a], ON, AGG) == {0: Reason.UNCERTAIN, 1: Reason.GROUP}
    alone = EscalateConfig(enabled=True, scope="rollout")
    assert escalations(rollouts, [0, 1, 2], verdicts, [a], alone, AGG) == {0: Reason.UNCERTAIN}


# --- the ensemble running tiers -----------------------------------------------------------------


def ensemble(*judges: tuple[FakeJudge, str], aggregation: AggregationConfig = AGG) -> Ensemble:
    config = parse_config({"judges": [{"name": j.name, "kind": "length", "cost": cost} for j, cost in judges]})
    members = [EnsembleMember(c, j) for c, (j, _) in zip(config.judges, judges, strict=True)]
    return Ensemble(members, aggregation)


def test_expensive_judge_runs_only_where_needed_batched_and_recorded():
    rule = FakeJudge("rule", lambda r: 0.5 if r.id == "r1" else 1.0)
    nova = FakeJudge("nova", lambda r: 0.9)
    results = asyncio.run(ensemble((rule, "free"), (nova, "expensive")).score([rollout(0), rollout(1), rollout(2, reference=None)]))
    assert nova.calls == [["r1", "r2"]]  # one batch, only the rollouts that needed it
    settled, uncertain, unreferenced = results
    assert settled.escalation == {"rule": "ran", "nova": "not_needed"}
    assert uncertain.escalation == {"rule": "ran", "nova": "uncertain"}
    assert unreferenced.escalation == {"rule": "ran", "nova": "no_reference"}
    # not needed is no failure: ok, not partial, and the weights renormalise over the judges that ran
    assert settled.status == "ok" and settled.reward == 1.0 and Flag.JUDGE_FAILED not in settled.flags
    assert settled.judges["nova"].status == "skipped" and settled.judges["nova"].score is None
    assert uncertain.reward == pytest.approx(0.7) and uncertain.status == "ok"
    assert [escalated(r) for r in results] == [False, True, True]
    assert [reached(r, ["nova"]) for r in results] == [False, True, True]


def test_quorum_counts_only_the_judges_called():
    rule, nova = FakeJudge("rule", lambda r: 1.0), FakeJudge("nova", lambda r: 0.9)
    strict = AggregationConfig(escalate=ON, quorum=2)
    (result,) = asyncio.run(ensemble((rule, "free"), (nova, "expensive"), aggregation=strict).score([rollout()]))
    assert result.reward == 1.0 and result.status == "ok" and Flag.QUORUM_MISSED not in result.flags


def test_three_tiers_stop_at_the_first_that_settles():
    rule = FakeJudge("rule", lambda r: 0.5)  # uncertain everywhere
    local = FakeJudge("local", lambda r: 0.5 if r.id == "r0" else 0.0)  # settles r1 (mean 0.25)
    nova = FakeJudge("nova", lambda r: 1.0)
    aggregation = AggregationConfig(escalate=EscalateConfig(enabled=True, uncertain=(0.3, 0.7)))
    results = asyncio.run(
        ensemble((rule, "free"), (local, "cheap"), (nova, "expensive"), aggregation=aggregation).score([rollout(0), rollout(1)])
    )
    assert local.calls == [["r0", "r1"]] and nova.calls == [["r0"]]
    assert results[0].escalation == {"rule": "ran", "local": "uncertain", "nova": "uncertain"}
    assert results[1].escalation == {"rule": "ran", "local": "uncertain", "nova": "not_needed"}


def test_a_failed_escalated_judge_is_partial_with_its_reason():
    rule = FakeJudge("rule", lambda r: 0.5)
    nova = FakeJudge("nova", lambda r: JudgeError("Bedrock unavailable"))
    (result,) = asyncio.run(ensemble((rule, "free"), (nova, "expensive")).score([rollout()]))
    assert result.status == "partial" and result.reward == 0.5 and result.escalation == {"rule": "ran", "nova": "uncertain"}
    assert "Bedrock unavailable" in result.judges["nova"].error


def test_every_judge_runs_for_probes_and_records_what_the_cascade_would_do():
    rule, nova = FakeJudge("rule", lambda r: 1.0 if r.id == "r0" else 0.5), FakeJudge("nova", lambda r: 0.9)
    forced = ensemble((rule, "free"), (nova, "expensive"))
    results = asyncio.run(forced.score([rollout(0), rollout(1)], every_judge=True))
    assert nova.calls == [["r0", "r1"]]
    assert [r.escalation for r in results] == [{"rule": "ran", "nova": "forced"}, {"rule": "ran", "nova": "uncertain"}]
    assert results[0].judges["nova"].score == 0.9 and not escalated(results[0]) and escalated(results[1])


def test_cascade_off_runs_everything_and_records_nothing():
    rule, nova = FakeJudge("rule", lambda r: 1.0), FakeJudge("nova", lambda r: 0.9)
    (result,) = asyncio.run(ensemble((rule, "free"), (nova, "expensive"), aggregation=AggregationConfig()).score([rollout()]))
    assert nova.calls == [["r0"]] and result.escalation is None and reached(result, ["nova"])


# --- config -------------------------------------------------------------------------------------


def test_default_costs_by_kind():
    config = parse_config(
        {
            "judges": [
                {"name": "rule", "kind": "final_answer"},
                {"name": "rm", "kind": "reward_model", "model_path": "/m"},
                {"name": "nova", "kind": "rubric", "model": "m", "criteria": [{"name": "c", "description": "d"}]},
                {"name": "big", "kind": "rubric", "model": "m", "criteria": [{"name": "c", "description": "d"}], "cost": 5},
            ]
        }
    )
    assert [j.cost_tier for j in config.judges] == [0, 1, 2, 5]


@pytest.mark.parametrize(
    ("escalate", "named"),
    [
        ({"uncertian": [0.2, 0.8]}, "unknown key `uncertian` in aggregation.escalate (did you mean `uncertain`?)"),
        ({"uncertain": [0.8, 0.2]}, "aggregation.escalate.uncertain"),
        ({"max_spread": 2}, "aggregation.escalate.max_spread"),
        ({"scope": "batch"}, "aggregation.escalate.scope"),
    ],
)
def test_bad_escalate_keys_are_named(escalate, named):
    with pytest.raises(ConfigError) as caught:
        parse_config({"judges": [{"name": "a", "kind": "length"}], "aggregation": {"escalate": escalate}})
    assert named in str(caught.value)


def test_bad_cost_is_named_and_a_cascade_needs_two_tiers():
    with pytest.raises(ConfigError) as caught:
        parse_config({"judges": [{"name": "a", "kind": "length", "cost": "pricey"}]})
    assert "judges[0].cost" in str(caught.value) and "free, cheap, expensive" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        parse_config({"judges": [{"name": "a", "kind": "length"}], "aggregation": {"escalate": {"enabled": True}}})
    assert "aggregation.escalate.enabled" in str(caught.value) and "two cost tiers" in str(caught.value)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_rescore_report_counts_escalated_rows(fmt):
    from farm.offline.report import summarise
    from farm.offline.results import encode_part, read_columns

    rule = FakeJudge("rule", lambda r: 0.5 if r.id == "r1" else 1.0)
    nova = FakeJudge("nova", lambda r: 0.9)
    cascade = ensemble((rule, "free"), (nova, "expensive"))
    results = asyncio.run(cascade.score([rollout(0), rollout(1), rollout(2, reference=None)]))
    config = parse_config({"judges": [{"name": "rule", "kind": "length"}, {"name": "nova", "kind": "length", "cost": "expensive"}]})
    part = encode_part(results, ["rule", "nova"], None, fmt)
    summary = summarise(read_columns([part], ["rule", "nova"], fmt), config)
    assert summary["escalated"] == 2
    assert summary["escalation"] == {"rule": {"ran": 3}, "nova": {"not_needed": 1, "uncertain": 1, "no_reference": 1}}
    assert summary["judges"]["nova"]["status"] == {"skipped": 1, "ok": 2}


def test_fresh_rollouts_canaries_and_consistency_checks_run_every_judge():
    from farm.wire import mark_fresh

    rule, nova = FakeJudge("rule", lambda r: 1.0), FakeJudge("nova", lambda r: 0.9)
    results = asyncio.run(ensemble((rule, "free"), (nova, "expensive")).score([rollout(0), mark_fresh(rollout(1))]))
    assert nova.calls == [["r1"]]
    assert [r.escalation["nova"] for r in results] == ["not_needed", "forced"]
    assert results[1].reward == pytest.approx(0.95) and results[1].judges["nova"].score == 0.9


def test_forced_runs_report_the_decision_for_fresh_rollouts_too():
    from farm.wire import mark_fresh

    rule, nova = FakeJudge("rule", lambda r: 1.0), FakeJudge("nova", lambda r: 0.9)
    forced = ensemble((rule, "free"), (nova, "expensive"))
    results = asyncio.run(forced.score([mark_fresh(rollout(0)), mark_fresh(rollout(1, reference=None))], every_judge=True))
    assert [r.escalation["nova"] for r in results] == ["forced", "no_reference"]  # what the cascade would do unmarked


def test_an_escalated_tier_gets_only_what_is_left_of_the_deadline(monkeypatch):
    import farm.ensemble as module

    monkeypatch.setattr(module, "_GRACE_S", 0.05)
    rule = FakeJudge("rule", lambda r: 0.5, delay_s=0.3)  # uses up nearly all of the round's 0.35 s
    nova = FakeJudge("nova", lambda r: 0.9, delay_s=0.3)  # alone it would fit its own 0.3 s deadline + grace
    config = parse_config(
        {
            "judges": [
                {"name": "rule", "kind": "length", "deadline_s": 0.3},
                {"name": "nova", "kind": "length", "cost": "expensive", "deadline_s": 0.3},
            ]
        }
    )
    cascade = Ensemble([EnsembleMember(c, j) for c, j in zip(config.judges, (rule, nova), strict=True)], AGG)
    (result,) = asyncio.run(cascade.score([rollout()]))
    assert result.escalation == {"rule": "ran", "nova": "uncertain"} or result.judges["rule"].status == "timeout"  # loaded machine
    assert result.judges["nova"].status == "timeout" and "left of the request's deadline" in result.judges["nova"].error
    assert result.status != "ok" and Flag.JUDGE_FAILED in result.flags
