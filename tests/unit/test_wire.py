import msgspec
import pytest

from farm.errors import InputError
from farm.wire import Message, RewardResult, Verdict, decode_results, encode_result, parse_rollout, prompt_text


def test_plain_rollout_with_message_prompt():
    r = parse_rollout(
        {
            "id": "q1-s0",
            "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"text": "2+2?"}]}],
            "response": "4",
            "reference": "4",
            "group": "q1",
            "metadata": {"k": 1},
        }
    )
    assert r.prompt == (Message("system", "be brief"), Message("user", "2+2?"))
    assert (r.response, r.reference, r.group, r.metadata) == ("4", "4", "q1", {"k": 1})
    assert "[user]\n2+2?" in prompt_text(r.prompt)


@pytest.mark.parametrize("role", ["assistant", "nova_assistant"])
def test_nova_rft_sample_form(role):
    r = parse_rollout(
        {
            "id": "s1",
            "messages": [{"role": "user", "content": "What is 6*7?"}, {"role": role, "content": "42"}],
            "reference_answer": 42,
        }
    )
    assert r.response == "42"
    assert r.prompt == (Message("user", "What is 6*7?"),)
    assert r.reference == "42"


def test_rft_reference_under_metadata():
    r = parse_rollout(
        {
            "id": "s2",
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
            "metadata": {"reference_answer": "a"},
        }
    )
    assert r.reference == "a"


def test_rft_last_turn_must_be_assistant():
    with pytest.raises(InputError, match=r"row 's3'.*field `messages\[1\]\.role`"):
        parse_rollout({"id": "s3", "messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "a"}]})


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"prompt": "p", "response": "r"}, "id"),
        ({"id": "x", "response": "r"}, "prompt"),
        ({"id": "x", "prompt": "p"}, "response"),
        ({"id": "x", "prompt": "p", "response": 3}, "response"),
        ({"id": "x", "prompt": 5, "response": "r"}, "prompt"),
        ({"id": "x", "prompt": [{"role": "robot", "content": "c"}], "response": "r"}, "prompt[0].role"),
        ({"id": "x", "prompt": "p", "response": "r", "group": [1]}, "group"),
        ({"id": "x", "prompt": "p", "response": "r", "metadata": "m"}, "metadata"),
        ({"id": "", "prompt": "p", "response": "r"}, "id"),
    ],
)
def test_bad_input_names_row_and_field(obj, field):
    with pytest.raises(InputError) as info:
        parse_rollout(obj, where="line 7")
    assert info.value.field == field
    assert f"field `{field}`" in str(info.value)
    assert "line 7" in str(info.value) or "'x'" in str(info.value)


def test_lone_surrogate_is_rejected_as_not_utf8():
    with pytest.raises(InputError, match=r"field `response`.*not valid UTF-8"):
        parse_rollout({"id": "x", "prompt": "p", "response": "bad \ud800 text"})


def test_non_object_row():
    with pytest.raises(InputError, match="must be a JSON object"):
        parse_rollout(["not", "an", "object"], where="rollouts[2]")


def test_integer_ids_are_accepted_as_strings():
    assert parse_rollout({"id": 17, "prompt": "p", "response": "r"}).id == "17"


def test_result_round_trip():
    verdict = Verdict(score=0.5, status="ok", criteria={"a": 0.5}, flags=("truncated",))
    result = RewardResult(id="x", reward=0.5, status="ok", judges={"j": verdict}, disagreement=None)
    data = b"[" + encode_result(result) + b"]"
    assert decode_results(data) == [result]
    decoded = msgspec.json.decode(encode_result(result))
    assert decoded["judges"]["j"]["status"] == "ok" and decoded["judges"]["j"]["error"] is None
