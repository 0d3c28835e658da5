"""Ranking metrics and confidence intervals against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from recrl_lib.evaluation import auc_per_user, mean_ci, seed_band


def brute_force_auc(scores, positives, candidates):
    pos = [s for s, p, c in zip(scores, positives, candidates) if p and c]
    neg = [s for s, p, c in zip(scores, positives, candidates) if c and not p]
    if not pos or not neg:
        return float("nan")
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def test_auc_matches_pairwise_counting():
    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.integers(0, 5, (6, 12)), dtype=torch.float)  # many ties
    candidates = torch.tensor(rng.random((6, 12)) < 0.8)
    positives = candidates & torch.tensor(rng.random((6, 12)) < 0.3)
    positives[5] = False  # a user with no positive -> NaN
    ours = auc_per_user(scores, positives, candidates)
    for u in range(6):
        expected = brute_force_auc(
            scores[u].tolist(), positives[u].tolist(), candidates[u].tolist()
        )
        if np.isnan(expected):
            assert torch.isnan(ours[u])
        else:
            assert ours[u].item() == pytest.approx(expected)


def test_auc_rejects_positive_outside_candidates():
    with pytest.raises(ValueError, match="candidate"):
        auc_per_user(
            torch.zeros(1, 2), torch.tensor([[True, False]]), torch.tensor([[False, True]])
        )


def test_mean_ci_brackets_the_mean_and_matches_scipy():
    values = np.random.default_rng(1).normal(3.0, 1.0, 50)
    mean, low, high = mean_ci(values)
    assert low < mean < high
    reference = stats.bootstrap(
        (values,), np.mean, n_resamples=2000, random_state=np.random.default_rng(0)
    )
    assert (low, high) == pytest.approx(tuple(reference.confidence_interval), rel=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        mean_ci([1.0])


def test_seed_band_is_the_student_t_interval_over_seeds():
    values = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0]])  # 3 seeds, 2 points
    mean, low, high = seed_band(values)
    # t(0.975, df=2) = 4.3027 (a table value); sd = 1 at point 0, 0 at point 1
    np.testing.assert_allclose(mean, [2.0, 10.0])
    np.testing.assert_allclose(high - mean, [4.3027 / np.sqrt(3), 0.0], atol=1e-4)
    np.testing.assert_allclose(mean - low, high - mean)
    with pytest.raises(ValueError, match="S >= 2 seeds"):
        seed_band(np.ones((1, 4)))
