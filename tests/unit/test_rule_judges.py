import asyncio
import json

import pytest

from farm.answers import answers_match, extract_final_answer
from farm.config import ExactMatchJudgeConfig, FinalAnswerJudgeConfig, JsonSchemaJudgeConfig, LengthJudgeConfig, RegexJudgeConfig
from farm.judges import ExactMatchJudge, FinalAnswerJudge, JsonSchemaJudge, LengthJudge, RegexJudge
from farm.wire import parse_rollout, parse_rollouts
from tests.conftest import gsm8k_rollouts, shared_file


def rollout(response: str, reference: str | None = None):
    return parse_rollout({"id": "x", "prompt": "p", "response": response, "reference": reference})


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so 9*2 = 18\n#### 18", "18"),
        ("She makes $18.\nA: 18", "18"),
        ("The answer is \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("Thus the final answer is: 1,200 dollars", "1,200 dollars"),
        ("I think 3 then 5 then 7", "7"),
        ("no numbers", None),
    ],
)
def test_extract_final_answer(text, answer):
    assert extract_final_answer(text) == answer


def test_answers_match_numbers_and_text():
    assert answers_match("$1,200.00", "1200")
    assert answers_match("3/4", "0.75")
    assert not answers_match("18", "19")
    assert answers_match("Paris.", "paris")


def test_final_answer_judge_agrees_with_gsm8k_labels(report):
    """Agreement of the rule judge with the human `is_correct` labels on all 5,276 rollouts."""
    rows = gsm8k_rollouts()
    judge = FinalAnswerJudge(FinalAnswerJudgeConfig(name="answer", kind="final_answer"))
    verdicts = asyncio.run(judge.score(parse_rollouts(rows)))
    labels = [row["metadata"]["is_correct"] for row in rows]
    agree = sum((v.score == 1.0) == label for v, label in zip(verdicts, labels, strict=True))
    report(f"final_answer judge vs GSM8K is_correct: {agree}/{len(rows)} = {agree / len(rows):.4f} agreement")
    assert len(rows) == 5276 and sum(labels) == 2001
    assert all(v.status == "ok" for v in verdicts)
    assert agree / len(rows) >= 0.99


def test_gsm8k_test_set_answer_format():
    with shared_file("gsm8k_test.jsonl").open() as handle:
        row = json.loads(handle.readline())
    judge = FinalAnswerJudge(FinalAnswerJudgeConfig(name="a", kind="final_answer"))
    assert judge.check(rollout("Janet makes 18 dollars.\nA: 18", row["answer"])).score == 1.0


def test_final_answer_without_reference_is_skipped_not_zero():
    verdict = FinalAnswerJudge(FinalAnswerJudgeConfig(name="a", kind="final_answer")).check(rollout("A: 4"))
    assert verdict.status == "skipped" and verdict.score is None and "reference" in verdict.error


def test_exact_regex_schema_length():
    exact = ExactMatchJudge(ExactMatchJudgeConfig(name="e", kind="exact_match"))
    assert exact.check(rollout("  Paris ", "paris")).score == 1.0
    regex = RegexJudge(RegexJudgeConfig(name="r", kind="regex", pattern=r"<answer>\d+</answer>"))
    assert regex.check(rollout("so <answer>4</answer>")).score == 1.0
    assert regex.check(rollout("4")).score == 0.0
    schema = JsonSchemaJudge(
        JsonSchemaJudgeConfig(
            name="s", kind="json_schema", schema={"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}}
        )
    )
    assert schema.check(rollout('{"x": 1}')).score == 1.0
    bad = schema.check(rollout('{"x": "one"}'))
    assert bad.score == 0.0 and "$.x" in bad.rationale
    assert "not JSON" in schema.check(rollout("{nope")).rationale
    length = LengthJudge(LengthJudgeConfig(name="l", kind="length", min_chars=2, max_chars=5))
    assert [length.check(rollout(t)).score for t in ("a", "abc", "abcdef")] == [0.0, 1.0, 0.0]


def test_rule_judge_bug_becomes_failed_state():
    class Broken(ExactMatchJudge):
        def check(self, rollout):
            raise KeyError("boom")

    verdicts = asyncio.run(Broken(ExactMatchJudgeConfig(name="e", kind="exact_match")).score([rollout("a", "a")]))
    assert verdicts[0].status == "failed" and verdicts[0].score is None and "KeyError" in verdicts[0].error
