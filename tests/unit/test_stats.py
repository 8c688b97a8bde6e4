"""farm.stats against values worked by hand and published examples, and against numpy/scipy on
random data with ties."""

import math
import random

import pytest

from farm.stats import auc, average_ranks, expected_calibration_error, paired, pearson, population_std, spearman


def test_auc_known_values() -> None:
    assert auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)  # scikit-learn's roc_auc_score example
    assert auc([0.5, 0.5], [False, True]) == pytest.approx(0.5)  # a tie counts half
    assert auc([0.2, 0.9, 0.1], [0.0, 1.0, 0.4]) == pytest.approx(1.0)  # labels >= 0.5 are positive
    assert auc([0.9, 0.1], [0, 1]) == pytest.approx(0.0)
    assert auc([0.3, 0.7], [1, 1]) is None and auc([], []) is None
    with pytest.raises(ValueError, match="2 scores but 1 labels"):
        auc([0.1, 0.2], [1])


def test_ece_known_values() -> None:
    assert expected_calibration_error([0.1, 0.9], [0.0, 1.0]) == pytest.approx(0.1)
    assert expected_calibration_error([0.75, 0.75, 0.75, 0.75], [1, 1, 1, 0]) == pytest.approx(0.0)
    assert expected_calibration_error([0.95, 0.95], [0, 0]) == pytest.approx(0.95)
    assert expected_calibration_error([1.0], [1.0]) == pytest.approx(0.0)  # a score of 1 falls in the last bin
    assert expected_calibration_error([], []) == 0.0


def test_correlations_known_values() -> None:
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4, 5], [10, 9, 2.5, 6, 4]) == pytest.approx(-0.7426106572325057)  # scipy.stats.pearsonr example
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)  # scipy.stats.spearmanr example
    assert spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)  # monotone, not linear
    assert pearson([1, 2], [1, 2]) is None  # fewer than 3 pairs
    assert pearson([1, 1, 1], [1, 2, 3]) is None  # constant side
    assert pearson([1, None, 2, float("nan"), 3], [2, 5, 4, 7, 6]) == pytest.approx(1.0)  # missing pairs left out


def test_ranks_paired_and_std() -> None:
    assert average_ranks([3, 1, 4, 1, 5]) == [3.0, 1.5, 4.0, 1.5, 5.0]
    assert average_ranks([2, 2, 2]) == [2.0, 2.0, 2.0] and average_ranks([]) == []
    assert paired([1, None, 3], [4, 5, float("nan")]) == ([1.0], [4.0])
    assert population_std([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(2.0)
    assert population_std([3.0]) == 0.0


def test_agrees_with_numpy_and_scipy_on_random_data_with_ties() -> None:
    np = pytest.importorskip("numpy")
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(7)
    scores = [round(rng.random(), 1) for _ in range(2_000)]  # 11 distinct values: many ties
    labels = [rng.random() < s for s in scores]
    other = [s + rng.gauss(0, 0.3) for s in scores]
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    u = stats.mannwhitneyu(positives, negatives).statistic
    assert auc(scores, labels) == pytest.approx(u / (sum(labels) * (len(labels) - sum(labels))))
    assert pearson(scores, other) == pytest.approx(float(np.corrcoef(scores, other)[0, 1]))
    assert spearman(scores, other) == pytest.approx(stats.spearmanr(scores, other).statistic)
    assert average_ranks(scores) == pytest.approx(list(stats.rankdata(scores)))
    assert population_std(other) == pytest.approx(float(np.std(other)))


def test_a_hundred_thousand_rows_in_one_pass() -> None:
    """Size, not speed, is what this checks (no timing asserts on a shared machine): the sort-based
    AUC is exact on 100k rows where the pairwise definition would need 10^10 comparisons."""
    n = 100_000
    scores = [i / n for i in range(n)]
    labels = [i >= n // 2 for i in range(n)]
    assert auc(scores, labels) == 1.0
    assert math.isclose(spearman(scores, list(reversed(scores))) or 0.0, -1.0)
