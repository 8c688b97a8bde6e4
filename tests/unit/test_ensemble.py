import asyncio

import pytest

from farm.config import AggregationConfig, parse_config
from farm.ensemble import Ensemble, EnsembleMember
from farm.errors import JudgeError
from farm.flags import Flag
from farm.testing import FakeJudge
from farm.wire import parse_rollout

ROLLOUTS = [parse_rollout({"id": f"r{i}", "prompt": "p", "response": f"answer {i}"}) for i in range(3)]


def members(*judges: tuple[FakeJudge, dict]) -> list[EnsembleMember]:
    config = parse_config({"judges": [{"name": j.name, "kind": "length", **extra} for j, extra in judges]})
    return [EnsembleMember(c, j) for c, (j, _) in zip(config.judges, judges, strict=True)]


def run(ensemble: Ensemble, rollouts=ROLLOUTS):
    return asyncio.run(ensemble.score(rollouts))


def test_weighted_mean_of_all_judges():
    ensemble = Ensemble(members((FakeJudge("a", lambda r: 1.0), {"weight": 3}), (FakeJudge("b", lambda r: 0.0), {})), AggregationConfig())
    results = run(ensemble)
    assert [r.reward for r in results] == [0.75] * 3
    assert all(r.status == "ok" and r.disagreement == 1.0 and Flag.HIGH_DISAGREEMENT in r.flags for r in results)


def test_failed_judge_is_partial_never_zero():
    down = FakeJudge("down", lambda r: JudgeError("Bedrock unavailable"))
    ensemble = Ensemble(members((FakeJudge("up", lambda r: 0.8), {}), (down, {})), AggregationConfig())
    result = run(ensemble)[0]
    assert result.reward == 0.8
    assert result.status == "partial"
    assert Flag.JUDGE_FAILED in result.flags
    assert result.judges["down"].status == "failed" and result.judges["down"].score is None
    assert "Bedrock unavailable" in result.judges["down"].error


def test_quorum_missed_gives_null_reward():
    down = FakeJudge("down", lambda r: JudgeError("x"))
    ensemble = Ensemble(members((FakeJudge("up", lambda r: 0.8), {}), (down, {})), AggregationConfig(quorum=2))
    result = run(ensemble)[0]
    assert result.reward is None and result.status == "failed"
    assert {Flag.QUORUM_MISSED, Flag.JUDGE_FAILED} <= set(result.flags)


def test_judge_that_raises_or_hangs_still_yields_verdicts():
    class Raises(FakeJudge):
        async def score(self, rollouts):
            raise RuntimeError("bug in judge")

    hang = FakeJudge("hang", delay_s=30)
    ensemble = Ensemble(members((Raises("raises"), {}), (hang, {"deadline_s": 0.05}), (FakeJudge("ok"), {})), AggregationConfig())
    import farm.ensemble as module

    grace, module._GRACE_S = module._GRACE_S, 0.05
    try:
        result = run(ensemble)[0]
    finally:
        module._GRACE_S = grace
    assert result.judges["raises"].status == "failed" and "bug in judge" in result.judges["raises"].error
    assert result.judges["hang"].status == "timeout"
    assert result.reward == 1.0 and result.status == "partial"


def test_gate_zero_skips_other_judges():
    gate = FakeJudge("gate", lambda r: 0.0 if r.id == "r1" else 1.0)
    expensive = FakeJudge("expensive", lambda r: 0.6)
    ensemble = Ensemble(members((gate, {"gate": True}), (expensive, {})), AggregationConfig())
    results = run(ensemble)
    assert expensive.calls == [["r0", "r2"]]
    assert results[1].reward == 0.0 and Flag.GATE_FAILED in results[1].flags
    assert results[1].judges["expensive"].status == "skipped"
    assert results[0].reward == 0.6  # the gate decides, it does not vote


def test_empty_response_is_flagged_and_policy_driven():
    empty = [parse_rollout({"id": "e", "prompt": "p", "response": "  \n"})]
    judge = FakeJudge("j")
    zero = run(Ensemble(members((judge, {})), AggregationConfig()), empty)[0]
    assert zero.reward == 0.0 and zero.flags == (Flag.EMPTY_RESPONSE,) and judge.calls == []
    null = run(Ensemble(members((judge, {})), AggregationConfig(empty_response="null")), empty)[0]
    assert null.reward is None and null.status == "failed"


@pytest.mark.parametrize(("method", "expected"), [("median", 0.5), ("majority", 1.0), ("trimmed_mean", 0.5)])
def test_methods_from_config(method, expected):
    judges = [(FakeJudge(n, lambda r, s=s: s), {}) for n, s in (("a", 0.5), ("b", 0.9), ("c", 0.1))]
    result = run(Ensemble(members(*judges), AggregationConfig(method=method, trim_fraction=0.34)))[0]
    assert result.reward == pytest.approx(expected)


def test_score_map_is_applied_before_aggregation_and_keeps_the_raw_score():
    import math

    mapped = members((FakeJudge("a", lambda r: 0.8), {"score_map": {"a": 10.0, "b": -5.0}}), (FakeJudge("b", lambda r: 0.0), {}))
    results = run(Ensemble(mapped, AggregationConfig()))
    expected = 1 / (1 + math.exp(-(10.0 * 0.8 - 5.0)))
    for result in results:
        assert result.judges["a"].score == pytest.approx(expected) and result.judges["a"].criteria["raw_score"] == 0.8
        assert result.reward == pytest.approx(expected / 2) and "raw_score" not in result.judges["b"].criteria


class _StrayCancel:
    """A judge whose shared work was cancelled under it (what a cache without single-flight
    ownership did): it raises CancelledError although nobody cancelled this request."""

    name = "stray"

    async def score(self, rollouts):
        raise asyncio.CancelledError()

    async def aclose(self) -> None:
        return None


def test_a_leaked_cancellation_is_a_failed_judge_not_a_lost_request():
    ensemble = Ensemble(members((FakeJudge("up", lambda r: 0.6), {}), (_StrayCancel(), {})), AggregationConfig())
    result = run(ensemble)[0]
    assert result.reward == 0.6 and result.status == "partial"
    assert result.judges["stray"].status == "failed" and "cancelled" in result.judges["stray"].error


def test_cancelling_the_request_itself_still_cancels():
    slow = FakeJudge("slow", lambda r: 1.0)

    async def main():
        async def hang(rollouts):
            await asyncio.sleep(10)

        slow.score = hang  # type: ignore[method-assign]
        task = asyncio.ensure_future(Ensemble(members((slow, {})), AggregationConfig()).score(ROLLOUTS))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
