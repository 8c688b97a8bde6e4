"""Every non-ok verdict carries a typed reason, set where the verdict is made; old results files
(no `reason`) still yield one from the error text; an unexpected exception type logs its
traceback once per process."""

import asyncio
import logging

import msgspec
import numpy as np
import pytest

import farm.judges.base as base
from farm.config import AggregationConfig, parse_config
from farm.ensemble import Ensemble, EnsembleMember
from farm.errors import (
    ConfigError,
    DeadlineError,
    InputError,
    JudgeCancelledError,
    JudgeError,
    JudgeTimeoutError,
    JudgeUnavailableError,
    ParseError,
    PermanentJudgeError,
    ThrottledError,
    TransientJudgeError,
)
from farm.flags import FailureReason
from farm.judges.base import failed_verdict, failure_reason, reason_for
from farm.offline.results import ScoreColumns, encode_part, read_columns
from farm.testing import FakeJudge
from farm.wire import RewardResult, Verdict, parse_rollout


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        (JudgeTimeoutError("slow"), "timeout", "timeout"),
        (DeadlineError("queued too long"), "timeout", "deadline"),
        (ThrottledError("429"), "failed", "throttled"),
        (ParseError("no JSON", raw="{"), "failed", "parse"),
        (PermanentJudgeError("403"), "failed", "rejected"),
        (TransientJudgeError("500"), "failed", "upstream"),
        (JudgeError("down"), "failed", "upstream"),
        (JudgeUnavailableError("replica died"), "failed", "unavailable"),
        (JudgeCancelledError("shared work cancelled"), "failed", "cancelled"),
        (InputError("bad row", field="response"), "failed", "input"),
        (TimeoutError(), "timeout", "timeout"),
        (asyncio.CancelledError(), "failed", "cancelled"),
        (KeyError("bug"), "failed", "unexpected"),
        (ConfigError("not a judge error"), "failed", "unexpected"),
    ],
)
def test_the_reason_comes_from_the_exception_type(error, status, reason):
    verdict = failed_verdict(error)
    assert (verdict.status, verdict.reason, failure_reason(verdict)) == (status, FailureReason(reason), reason)
    assert verdict.error and type(error).__name__ in verdict.error  # the human text stays


def test_an_unexpected_type_logs_its_traceback_once(caplog, monkeypatch):
    monkeypatch.setattr(base, "_logged", set())

    class Bug(Exception):
        pass

    def boom() -> None:
        raise Bug("judge bug")

    caught = []
    for _ in range(3):
        try:
            boom()
        except Bug as exc:
            caught.append(exc)
    with caplog.at_level(logging.ERROR, logger="farm.judges.base"):
        verdicts = [failed_verdict(exc) for exc in caught] + [failed_verdict(JudgeError("expected"))]
    assert [v.reason for v in verdicts] == [FailureReason.UNEXPECTED] * 3 + [FailureReason.UPSTREAM]
    records = [r for r in caplog.records if r.name == "farm.judges.base"]
    assert len(records) == 1 and "Bug" in records[0].getMessage()
    assert records[0].exc_info is not None and "boom" in caplog.text  # the traceback, with the failing frame


def test_ensemble_verdicts_carry_reasons_for_failures_and_skips():
    class Raises(FakeJudge):
        async def score(self, rollouts):
            raise RuntimeError("bug in judge")

    judges = [
        (Raises("raises"), {}),
        (FakeJudge("throttled", lambda r: ThrottledError("429")), {}),
        (FakeJudge("gate", lambda r: 0.0 if r.id == "gated" else 1.0), {"gate": True}),
        (FakeJudge("ok"), {}),
    ]
    config = parse_config({"judges": [{"name": j.name, "kind": "length", **extra} for j, extra in judges]})
    ensemble = Ensemble([EnsembleMember(c, j) for c, (j, _) in zip(config.judges, judges, strict=True)], AggregationConfig())
    rows = [parse_rollout({"id": i, "prompt": "p", "response": r}) for i, r in (("live", "an answer"), ("gated", "x"), ("empty", " "))]
    live, gated, empty = asyncio.run(ensemble.score(rows))
    assert live.judges["raises"].reason is FailureReason.UNEXPECTED
    assert live.judges["throttled"].reason is FailureReason.THROTTLED
    assert live.judges["ok"].reason is None and live.judges["ok"].status == "ok"
    assert gated.judges["ok"].status == "skipped" and gated.judges["ok"].reason is FailureReason.GATED
    assert {v.reason for v in empty.judges.values()} == {FailureReason.EMPTY_RESPONSE}


def test_rule_judges_say_why_they_skip():
    from farm.judges.exact_match import ExactMatchJudge
    from farm.judges.final_answer import FinalAnswerJudge

    config = parse_config({"judges": [{"name": "fa", "kind": "final_answer"}, {"name": "em", "kind": "exact_match"}]})
    row = parse_rollout({"id": "x", "prompt": "p", "response": "42"})
    for judge in (FinalAnswerJudge(config.judges[0]), ExactMatchJudge(config.judges[1])):
        (verdict,) = asyncio.run(judge.score([row]))
        assert verdict.status == "skipped" and verdict.reason is FailureReason.NO_REFERENCE


def test_the_wire_stays_backward_compatible():
    old = b'{"score": null, "status": "failed", "error": "ThrottledError: 429"}'  # written before `reason` existed
    verdict = msgspec.json.decode(old, type=Verdict)
    assert verdict.reason is None and failure_reason(verdict) == "throttled"
    assert reason_for("failed", "unexpected KeyError: 'x'") == "unexpected"
    assert reason_for("failed", "SomethingElse: ?") == "other"
    assert reason_for("skipped", "needs a reference", "no_reference") is None  # metrics count failures only
    future = msgspec.json.decode(b'{"score": null, "status": "failed", "reason": "a_reason_added_later"}', type=Verdict)
    assert future.reason == "a_reason_added_later"  # an older reader still decodes a newer farm's results
    new = msgspec.json.decode(msgspec.json.encode(failed_verdict(ParseError("bad", raw="x"))))
    assert new["reason"] == "parse" and new["status"] == "failed" and new["error"].startswith("ParseError: bad")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_reports_count_the_stored_reason(fmt):
    # the stored reason wins over the text: a DeadlineError's text would read back as "other"
    verdict = failed_verdict(DeadlineError("the deadline passed"))
    result = RewardResult(id="a", reward=None, status="failed", judges={"j": verdict})
    columns = read_columns([encode_part([result], ["j"], None, fmt)], ["j"], fmt)
    assert dict(columns.reasons["j"]) == {"deadline": 1}


def test_reports_of_old_parts_fall_back_to_the_error_text():
    columns = ScoreColumns(["j"])
    part = {
        "status": ["failed", "failed", "ok"],
        "reward": [None] * 3,
        "label": [None] * 3,
        "flags": [None] * 3,
        "j.score": [None] * 3,
        "j.status": ["failed", "timeout", "ok"],
        "j.error": ["ParseError: no JSON", "JudgeTimeoutError: slow", None],
        "j.reason": [None, None, None],
        "j.cached": np.array([False] * 3),
        "j.input_tokens": np.zeros(3, dtype=int),
        "j.output_tokens": np.zeros(3, dtype=int),
    }
    columns.add(part)
    assert dict(columns.reasons["j"]) == {"parse": 1, "timeout": 1}


def test_the_score_summary_counts_typed_reasons():
    from farm.scorefile import ScoreSummary, _count

    summary = ScoreSummary()
    for error in (ThrottledError("429"), ThrottledError("429 again"), DeadlineError("queued")):
        _count(summary, RewardResult(id="a", reward=None, status="failed", judges={"j": failed_verdict(error)}))
    assert summary.as_dict()["judge_reasons"] == {"j": {"throttled": 2, "deadline": 1}}
