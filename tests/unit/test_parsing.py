import pytest

from farm.config import Criterion
from farm.errors import ParseError
from farm.parsing import extract_json, parse_preference, parse_rubric

CRITERIA = [Criterion(name="accuracy", description="d", weight=3), Criterion(name="cites", description="d", scale="boolean")]


def test_strict_json_is_not_marked_repaired():
    assert extract_json('{"a": 1}') == ({"a": 1}, False)


def test_fenced_json_with_prose_around_it():
    value, repaired = extract_json('Sure! Here you go:\n```json\n{"winner": "A", "rationale": "x"}\n```\nThanks')
    assert value == {"winner": "A", "rationale": "x"} and not repaired


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1, "b": [1, 2,],}', {"a": 1, "b": [1, 2]}),
        ("{'a': 'b c', 'n': 2,}", {"a": "b c", "n": 2}),
        ('{"accuracy": {"score": 4, "rationale": "good', {"accuracy": {"score": 4, "rationale": "good"}}),
        ('{"a": {"b": 1', {"a": {"b": 1}}),
        ("{\u201ca\u201d: 2}", {"a": 2}),
    ],
)
def test_repairs(text, expected):
    value, repaired = extract_json(text)
    assert repaired
    if expected is not None:
        assert value == expected


def test_python_literals_become_json():
    value, repaired = extract_json("{'ok': True, 'none': None}")
    assert value == {"ok": True, "none": None} and repaired


@pytest.mark.parametrize("text", ["", "   ", "no json here at all", "[1, 2, 3]"])
def test_unreadable_raises_with_raw(text):
    with pytest.raises(ParseError) as info:
        extract_json(text)
    assert info.value.raw == text


def test_parse_rubric_normalises_and_weights():
    answer = parse_rubric({"accuracy": {"score": 5, "rationale": "right"}, "cites": {"score": False, "rationale": "none"}}, CRITERIA)
    assert answer.criteria == {"accuracy": 1.0, "cites": 0.0}
    assert answer.score == pytest.approx(0.75)
    assert "accuracy: right" in answer.rationale


def test_parse_rubric_accepts_flat_and_nested_forms():
    assert parse_rubric({"scores": {"accuracy": "3", "cites": "yes"}}, CRITERIA).criteria == {"accuracy": 0.5, "cites": 1.0}


@pytest.mark.parametrize(
    "payload",
    [
        {"accuracy": 4},
        {"accuracy": 6, "cites": True},
        {"accuracy": 0, "cites": True},
        {"accuracy": 3, "cites": "maybe"},
        {"accuracy": True, "cites": True},
    ],
)
def test_parse_rubric_rejects_missing_or_out_of_range(payload):
    with pytest.raises(ParseError):
        parse_rubric(payload, CRITERIA)


def test_parse_preference():
    assert parse_preference({"winner": "Response B", "rationale": "r"}).winner == "B"
    assert parse_preference({"winner": "TIE"}).winner == "tie"
    with pytest.raises(ParseError):
        parse_preference({"winner": "C"})
    with pytest.raises(ParseError):
        parse_preference({"rationale": "no winner"})
