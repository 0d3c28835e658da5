"""Ranking metrics and confidence intervals against independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from recrl_lib.evaluation import (
    auc_per_user,
    compare_over_seeds,
    mean_ci,
    on_policy_report,
    paired_difference,
    policy_summary,
    seed_band,
    t_interval,
)


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


@pytest.mark.parametrize("interval", ["bootstrap", "t"])
def test_intervals_cover_a_known_mean_at_about_the_nominal_rate(interval):
    rng = np.random.default_rng(2)
    trials, covered = 300, 0
    for trial in range(trials):
        sample = rng.exponential(2.0, 40)  # skewed, true mean 2
        if interval == "bootstrap":
            _, low, high = mean_ci(sample, n_resamples=500, seed=trial)
        else:
            _, low, high = t_interval(sample)
        covered += low <= 2.0 <= high
    # 95% nominal; 300 trials give a binomial sd of 1.3 points: accept 90-99%
    assert 0.90 <= covered / trials <= 0.99, covered / trials


def test_t_interval_matches_the_table_and_rejects_too_few_values():
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and high - mean == pytest.approx(4.3027 / np.sqrt(3), abs=1e-4)
    assert t_interval([4.0, 4.0]) == (4.0, 4.0, 4.0)
    with pytest.raises(ValueError, match=">= 2 finite values"):
        t_interval([1.0])


def test_compare_over_seeds_pairs_users_and_treats_seeds_as_replicates():
    rng = np.random.default_rng(0)
    base = rng.normal(10, 3, 200)  # a baseline's sessions on 200 users
    a = np.stack([base + shift + rng.normal(0, 0.5, 200) for shift in (1.0, 1.4, 0.7)])
    per_seed, overall = compare_over_seeds(a, base)
    np.testing.assert_allclose(per_seed["diff"], (a - base).mean(1))
    # each seed: the paired t interval over users (by hand)
    d = a[0] - base
    half = stats.t.ppf(0.975, 199) * d.std(ddof=1) / np.sqrt(200)
    assert (per_seed.loc[0, "low"], per_seed.loc[0, "high"]) == pytest.approx(
        (d.mean() - half, d.mean() + half)
    )
    # over seeds: the t interval of the three per-seed means, 2 degrees of freedom
    m = per_seed["diff"].to_numpy()
    half = stats.t.ppf(0.975, 2) * m.std(ddof=1) / np.sqrt(3)
    assert (overall["low"], overall["high"]) == pytest.approx((m.mean() - half, m.mean() + half))
    assert overall["seeds"] == 3 and overall["low"] > 0
    # pairing matters: the users' own spread (sd 3) does not widen the per-seed interval
    assert (per_seed["high"] - per_seed["low"]).max() < 0.5
    with pytest.raises(ValueError, match=r"\[S, U\]"):
        compare_over_seeds(a, base[:10])
    named, _ = compare_over_seeds(a, base, seeds=[20, 21, 22])  # rows labelled by their seed
    assert list(named.index) == [20, 21, 22] and named.loc[20, "diff"] == per_seed.loc[0, "diff"]
    with pytest.raises(ValueError, match="seeds names 2 seeds"):
        compare_over_seeds(a, base, seeds=[20, 21])


def test_policy_summary_uses_sessions_for_fixed_and_seeds_for_learned_policies():
    rng = np.random.default_rng(3)

    def table(mean):
        columns = {"return": rng.normal(mean, 2, 100), "length": 10, "clickbait": 0.1}
        return pd.DataFrame(columns | {"mean_rating": 4.0})

    fixed, learned = table(5.0), [table(m) for m in (6.0, 7.0, 8.0)]
    summary = policy_summary({"fixed": fixed, "learned": learned})
    assert summary.loc["fixed", "interval"] == "100 sessions"
    assert (summary.loc["fixed", "ci_low"], summary.loc["fixed", "ci_high"]) == pytest.approx(
        mean_ci(fixed["return"])[1:]
    )
    seed_means = [t["return"].mean() for t in learned]
    assert summary.loc["learned", "interval"] == "3 seeds"
    assert (summary.loc["learned", "ci_low"], summary.loc["learned", "ci_high"]) == pytest.approx(
        t_interval(seed_means)[1:]
    )
    assert summary.loc["learned", "return"] == pytest.approx(np.mean(seed_means))


def test_paired_difference_is_the_paired_t_interval_by_hand():
    rng = np.random.default_rng(3)
    a, b = rng.normal(1.0, 1.0, 30), rng.normal(0.0, 1.0, 30)
    a[4] = np.nan  # that pair is left out
    result = paired_difference(a, b)
    d = np.delete(a - b, 4)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert result["n"] == 29
    assert result["diff"] == pytest.approx(d.mean())
    assert (result["low"], result["high"]) == (
        pytest.approx(d.mean() - half),
        pytest.approx(d.mean() + half),
    )


def test_on_policy_report_has_every_metric_with_its_interval():
    rng = np.random.default_rng(4)

    def table(shift: float) -> pd.DataFrame:
        length = rng.integers(1, 20, 50)
        clicks = rng.binomial(length, 0.4)
        rating = np.where(clicks > 0, 3.5 + shift, np.nan)
        return pd.DataFrame({"return": clicks + 0.0, "length": length, "mean_rating": rating})

    report = on_policy_report({"fixed": table(0.0), "learned": [table(0.1), table(0.3)]})
    assert set(report.columns.get_level_values(0)) == {"return", "CTR", "length", "rating"}
    fixed = table(0.0)
    row = report.loc["learned"]
    assert row[("rating", "mean")] == pytest.approx(3.5 + 0.2)
    assert (report.xs("low", axis=1, level=1) <= report.xs("mean", axis=1, level=1)).all().all()
    assert (report.xs("mean", axis=1, level=1) <= report.xs("high", axis=1, level=1)).all().all()
    ctr = (fixed["return"] / fixed["length"]).mean()
    assert on_policy_report({"f": fixed}).loc["f", ("CTR", "mean")] == pytest.approx(ctr)
