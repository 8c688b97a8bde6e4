"""Listwise preference: parsing a ranking, rankings to pairwise outcomes, the orders asked, and
reference-anchored group rewards on an incomplete comparison graph."""

from __future__ import annotations

import pytest

from farm.emulator.simjudge import JudgeProfile, answer_request
from farm.errors import ParseError
from farm.judges.preference import list_orders
from farm.parsing import parse_ranking
from farm.prompting import listwise_prompt, listwise_schema
from farm.ranking import anchored_rewards, bradley_terry, merge_outcomes, ranking_outcomes

LABELS = ["1", "2", "3", "R"]


def test_a_ranking_is_read_from_a_list_or_a_string() -> None:
    assert parse_ranking({"ranking": ["2", 1, "Response 3", "r"], "rationale": "why"}, LABELS).ranking == ("2", "1", "3", "R")
    assert parse_ranking({"ranking": "3 > R > 1 > 2"}, LABELS).ranking == ("3", "R", "1", "2")
    assert parse_ranking({"order": "reference, 2, 1, 3"}, LABELS).ranking == ("R", "2", "1", "3")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"ranking": ["1", "2", "3"]}, "leaves out R"),
        ({"ranking": ["1", "1", "2", "3", "R"]}, "twice"),
        ({"ranking": ["1", "2", "3", "4", "R"]}, "'4'"),
        ({"ranking": 3}, "must be a list"),
        ({"winner": "A"}, "must be a list"),
    ],
)
def test_a_partial_or_unknown_ranking_is_a_parse_error(payload: dict, message: str) -> None:
    with pytest.raises(ParseError, match=message) as caught:
        parse_ranking(payload, LABELS)
    assert caught.value.raw  # the raw answer travels with the error


def test_rankings_become_pairwise_outcomes_and_flips_average_to_ties() -> None:
    assert ranking_outcomes([2, 0, 1]) == {(0, 2): 0.0, (1, 2): 0.0, (0, 1): 1.0}
    merged, flipped = merge_outcomes([ranking_outcomes([0, 1, 2]), ranking_outcomes([1, 0, 2])])
    assert merged == {(0, 1): 0.5, (0, 2): 1.0, (1, 2): 1.0}
    assert flipped == {(0, 1): True, (0, 2): False, (1, 2): False}


def test_bradley_terry_ranks_an_incomplete_graph() -> None:
    # a chain 0 > 1 > 2 > 3 with no direct game between 0 and 3: transitivity still orders them
    rewards = bradley_terry(5, {(0, 1): 1.0, (1, 2): 1.0, (2, 3): 1.0})
    assert rewards[4] is None
    assert rewards[0] > rewards[1] > rewards[2] > rewards[3]  # type: ignore[operator]


def test_the_reference_anchor_caps_an_all_wrong_group() -> None:
    # every rollout below the reference (player 4): order kept, reward at most a tenth
    rounds = [ranking_outcomes([4, 0, 1, 2, 3]), ranking_outcomes([4, 3, 2, 1, 0])]
    merged, _ = merge_outcomes(rounds)
    low = anchored_rewards(4, merged)
    assert all(r is not None and r <= 0.1 for r in low)
    # the same group with rollout 0 above the reference: it keeps its full group reward
    merged, _ = merge_outcomes([ranking_outcomes([0, 4, 1, 2, 3]), ranking_outcomes([0, 4, 3, 2, 1])])
    high = anchored_rewards(4, merged)
    assert high[0] == pytest.approx(bradley_terry(4, {p: o for p, o in merged.items() if 4 not in p})[0])  # type: ignore[arg-type]
    assert high[0] > 0.5 and all(r is not None and r <= 0.1 for r in high[1:])


@pytest.mark.parametrize(("size", "max_items"), [(2, 10), (8, 10), (16, 8), (23, 10), (40, 12)])
def test_listwise_orders_cover_the_group_and_stay_connected(size: int, max_items: int) -> None:
    plan = list_orders(size, 2, max_items, seed="g")
    assert plan == list_orders(size, 2, max_items, seed="g")  # seeded: a rerun asks the same calls (cache hits)
    edges: set[tuple[int, int]] = set()
    for order in plan:
        assert sorted(i for chunk in order for i in chunk) == list(range(size))  # everyone once per order
        assert all(2 <= len(chunk) <= max_items for chunk in order)
        edges |= {(a, b) for chunk in order for a in chunk for b in chunk if a != b}
    if size <= max_items:
        assert plan[1][0] == plan[0][0][::-1]  # one call per order; the second is the reverse of the first
    reached, frontier = {0}, [0]
    while frontier:
        node = frontier.pop()
        for a, b in edges:
            if a == node and b not in reached:
                reached.add(b)
                frontier.append(b)
    assert reached == set(range(size))


def test_the_emulated_judge_ranks_by_quality_with_primacy_among_equals() -> None:
    prompt = listwise_prompt(
        criteria="correctness",
        prompt="What is 9*2?",
        responses=["9*2 = 20\nA: 20", "9*2 = 18\nA: 18", "9*2 = 21\nA: 21"],
        reference="A: 18",
        max_chars=1000,
        structured=True,
    )
    answer = answer_request(prompt.prefix + prompt.user, "record_ranking", JudgeProfile(noise=0.0), "m")
    assert answer.kind == "listwise"
    ranking = parse_ranking(answer.payload or {}, ["1", "2", "3", "R"]).ranking
    assert ranking == ("2", "R", "1", "3")  # right answer above the key; equal wrong ones in the order shown
    schema = listwise_schema(["1", "2", "3", "R"])
    assert schema["properties"]["ranking"]["items"]["enum"] == ["1", "2", "3", "R"]


def test_without_the_anchor_the_reference_is_shown_but_not_ranked() -> None:
    prompt = listwise_prompt(
        criteria="correctness",
        prompt="What is 9*2?",
        responses=["9*2 = 20\nA: 20", "9*2 = 18\nA: 18"],
        reference="A: 18",
        rank_reference=False,
        max_chars=1000,
        structured=True,
    )
    assert "A: 18" in prompt.prefix and 'Place "R"' not in prompt.user  # the answer key still informs the judge
    answer = answer_request(prompt.prefix + prompt.user, "record_ranking", JudgeProfile(noise=0.0), "m")
    assert parse_ranking(answer.payload or {}, ["1", "2"]).ranking == ("2", "1")
