"""Evaluation: ranking metrics and confidence intervals. Pure functions on tensors and arrays."""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats


def auc_per_user(
    scores: torch.Tensor, positives: torch.Tensor, candidates: torch.Tensor
) -> torch.Tensor:
    """ROC AUC of each user's ranking: positives against the other candidates.

    scores: [U, N] float; positives, candidates: [U, N] bool (positives must be candidates).
    The negatives of user u are candidates[u] & ~positives[u]. Ties count one half.
    Returns [U] float, NaN for users with no positive or no negative.
    """
    if not (scores.shape == positives.shape == candidates.shape):
        raise ValueError(f"shapes differ: scores {tuple(scores.shape)}, positives {tuple(positives.shape)}, candidates {tuple(candidates.shape)}")  # fmt: skip
    if (positives & ~candidates).any():
        raise ValueError("every positive must also be a candidate")
    negatives = candidates & ~positives
    scores = scores.double()
    # Rank each score among the user's candidates (average rank for ties): the Mann-Whitney U.
    masked = torch.where(candidates, scores, torch.full_like(scores, float("inf")))
    ranks = torch.from_numpy(stats.rankdata(masked.cpu().numpy(), axis=1)).to(scores.device)
    n_pos, n_neg = positives.sum(1).double(), negatives.sum(1).double()
    rank_sum = (ranks * positives).sum(1)
    u_stat = rank_sum - n_pos * (n_pos + 1) / 2
    auc = u_stat / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))


def mean_ci(
    values, confidence: float = 0.95, *, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its bootstrap confidence interval (scipy, BCa)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        raise ValueError(f"mean_ci needs at least 2 finite values, got {len(values)}")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0]), float(values[0])
    result = stats.bootstrap(
        (values,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
        random_state=np.random.default_rng(seed),
    )  # fmt: skip
    low, high = result.confidence_interval
    return float(values.mean()), float(low), float(high)


def seed_band(values, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values [S, T] (S seeds × T points) -> (mean, low, high), each [T].

    The Student-t interval of the mean over seeds at each point: with 3–5 seeds a bootstrap
    cannot resample enough, and t accounts for estimating the spread from so few runs.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[0] < 2:
        raise ValueError(f"seed_band needs values [S, T] with S >= 2 seeds, got shape {values.shape}")  # fmt: skip
    n = values.shape[0]
    mean = values.mean(0)
    half = stats.t.ppf(0.5 + confidence / 2, df=n - 1) * values.std(0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half
