import pytest

from farm.aggregate import aggregate, disagreement, majority, median, trimmed_mean, weighted_mean
from farm.ranking import bradley_terry, win_rates


def test_none_is_skipped_never_zero():
    assert weighted_mean([(1.0, 1), (None, 5)]) == 1.0
    assert median([(None, 1)]) is None
    assert weighted_mean([]) is None


def test_methods():
    scored = [(0.0, 1.0), (0.5, 1.0), (1.0, 2.0)]
    assert weighted_mean(scored) == pytest.approx(0.625)
    assert median(scored) == 0.5
    assert trimmed_mean([(0.0, 1), (0.4, 1), (0.6, 1), (1.0, 1), (0.5, 1)], 0.2) == pytest.approx(0.5)
    assert majority(scored) == 1.0
    assert majority([(0.9, 1), (0.1, 1), (0.2, 1)]) == 0.0
    assert aggregate("median", scored) == 0.5
    with pytest.raises(ValueError, match="unknown aggregation method"):
        aggregate("mode", scored)


def test_disagreement_is_spread_of_answering_judges():
    assert disagreement([0.1, None, 0.9]) == pytest.approx(0.8)
    assert disagreement([0.5, None]) is None


def test_win_rates_and_bradley_terry_rank_alike():
    # 0 beats everyone, 1 beats 2 and 3, 2 ties 3
    outcomes = {(0, 1): 1.0, (0, 2): 1.0, (0, 3): 1.0, (1, 2): 1.0, (1, 3): 1.0, (2, 3): 0.5}
    wr = win_rates(4, outcomes)
    bt = bradley_terry(4, outcomes)
    assert wr == [1.0, pytest.approx(2 / 3), pytest.approx(1 / 6), pytest.approx(1 / 6)]
    assert bt[0] > bt[1] > bt[2] == pytest.approx(bt[3])
    assert all(0 < x < 1 for x in bt)  # the prior keeps an unbeaten player finite


def test_player_without_games_abstains():
    assert win_rates(3, {(0, 1): 1.0})[2] is None
    assert bradley_terry(3, {(0, 1): 1.0})[2] is None
