"""Confidence intervals, paired comparisons, and the on-policy summary table.

Statistics follow one rule: **the training seed is the unit of replication**. Sessions of one
trained agent are not independent evidence about the *algorithm*; the S per-seed means are.
So claims about learned agents use :func:`seed_band` / :func:`compare_over_seeds` (Student-t
over seeds), and :func:`mean_ci` (a bootstrap over sessions) describes one fixed policy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# scipy.stats is imported where it is used: it takes about 2 s to import, and every exercise
# imports this module (through recrl_lib.grading) in its setup cell, which the grader times.


def mean_ci(
    values, confidence: float = 0.95, *, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of one fixed policy's sessions and its bootstrap interval
    (scipy, BCa). For learned agents compare seeds instead (:func:`compare_over_seeds`)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if len(values) < 2:
        raise ValueError(f"mean_ci needs at least 2 finite values, got {len(values)}")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0]), float(values[0])
    from scipy import stats

    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        random_state=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return float(values.mean()), float(low), float(high)


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean of independent replicates
    (e.g. one number per training seed). With 3–5 seeds a bootstrap cannot resample enough;
    t accounts for estimating the spread from so few runs."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) < 2 or np.isnan(values).any():
        raise ValueError(f"t_interval needs >= 2 finite values in a 1-D array, got {values!r}")
    mean = float(values.mean())
    if np.all(values == values[0]):
        return mean, mean, mean
    from scipy import stats

    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=stats.sem(values))
    return mean, float(low), float(high)


def seed_band(values, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values [S, T] (S seeds × T points) -> (mean, low, high), each [T]: :func:`t_interval`
    over seeds at each point (a learning curve's band)."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[0] < 2:
        raise ValueError(
            f"seed_band needs values [S, T] with S >= 2 seeds, got shape {values.shape}"
        )
    columns = [t_interval(values[:, j], confidence) for j in range(values.shape[1])]
    mean, low, high = (np.array(x) for x in zip(*columns))
    return mean, low, high


def compare_over_seeds(a, b, confidence: float = 0.95, *, seeds=None) -> tuple[pd.DataFrame, dict]:
    """Is policy A better than B? Paired on the same evaluation users, replicated over seeds.

    a: [S, U] per-user results of A (e.g. session returns) for S training seeds on the same U
    users (same order, same evaluation seed); b: [S, U] likewise, or [U] for a policy with no
    training seed. Pairs with a NaN on either side are left out (e.g. a user with nothing to
    rank).

    Returns (per_seed, overall). ``per_seed`` has one row per seed, indexed by ``seeds`` (the
    training seeds, in the order of ``a``'s rows; default 0..S−1): the mean paired difference
    A − B over users and its t interval (scipy's paired t-test), and ``a``, ``b`` means.
    ``overall`` is the mean of the S per-seed differences with its t interval *over seeds*
    (``diff``, ``low``, ``high``, ``seeds``): the claim "A beats B" for the algorithm holds
    when ``low > 0``; "in every seed" when every per-seed ``low > 0``.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if b.ndim == 1 and a.ndim == 2 and len(b) == a.shape[1]:
        b = np.broadcast_to(b, a.shape)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a must be [S, U] and b [S, U] or [U], got {a.shape} and {b.shape}")
    rows = []
    for seed_a, seed_b in zip(a, b):
        keep = ~(np.isnan(seed_a) | np.isnan(seed_b))
        if keep.sum() < 2:
            raise ValueError("compare_over_seeds needs >= 2 complete pairs in every seed")
        pair = paired_difference(seed_a, seed_b, confidence)
        row = {"a": seed_a[keep].mean(), "b": seed_b[keep].mean(), "diff": pair["diff"]}
        rows.append(row | {"low": pair["low"], "high": pair["high"]})
    if seeds is not None and len(seeds) != len(a):
        raise ValueError(f"seeds names {len(seeds)} seeds, a has {len(a)} rows")
    per_seed = pd.DataFrame(rows, index=list(seeds) if seeds is not None else None)
    per_seed.index.name = "seed" if seeds is not None else "seed (row of a)"
    mean, low, high = t_interval(per_seed["diff"].to_numpy(), confidence)
    return per_seed, {"diff": mean, "low": low, "high": high, "seeds": len(a)}


def policy_summary(
    results: dict[str, pd.DataFrame | list[pd.DataFrame]], confidence: float = 0.95
) -> pd.DataFrame:
    """One row per policy from ``evaluate_policy`` tables on the same users.

    ``results[name]`` is one table (a fixed policy: its CI is a bootstrap over sessions) or a
    list with one table per training seed (a learned policy: its CI is the t interval over
    the per-seed means — the seed is the unit). Columns: return, ci_low, ci_high, interval,
    and the mean length, clickbait share and mean rating.
    """
    rows = {}
    for name, result in results.items():
        if isinstance(result, pd.DataFrame):
            mean, low, high = mean_ci(result["return"], confidence)
            interval, tables = f"{len(result)} sessions", [result]
        else:
            mean, low, high = t_interval([t["return"].mean() for t in result], confidence)
            interval, tables = f"{len(result)} seeds", result
        rows[name] = {
            "return": mean,
            "ci_low": low,
            "ci_high": high,
            "interval": interval,
            "length": np.mean([t["length"].mean() for t in tables]),
            "clickbait": np.mean([t["clickbait"].mean() for t in tables]),
            "mean rating": np.mean([t["mean_rating"].mean() for t in tables]),
        }
    numeric = ["return", "ci_low", "ci_high", "length", "clickbait", "mean rating"]
    return pd.DataFrame(rows).T.astype({column: float for column in numeric})


def paired_difference(a, b, confidence: float = 0.95) -> dict[str, float]:
    """Mean of A − B over the same units (users) and its paired-t interval (scipy), for two
    *fixed* policies (no training seed). Pairs with a NaN on either side are left out.
    Returns ``diff``, ``low``, ``high`` and ``n`` (the pairs used)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be [U] on the same users, got {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    if keep.sum() < 2:
        raise ValueError("paired_difference needs >= 2 complete pairs")
    a, b = a[keep], b[keep]
    diff = a - b
    if np.all(diff == diff[0]):
        low = high = float(diff[0])
    else:
        from scipy import stats

        ci = stats.ttest_rel(a, b).confidence_interval(confidence)
        low, high = float(ci.low), float(ci.high)
    return {"diff": float(diff.mean()), "low": low, "high": high, "n": int(keep.sum())}


ON_POLICY_METRICS = {"return": "return", "CTR": "ctr", "length": "length", "rating": "mean_rating"}


def on_policy_report(
    results: dict[str, pd.DataFrame | list[pd.DataFrame]], confidence: float = 0.95
) -> pd.DataFrame:
    """Session return, click-through rate (clicks / steps of each session), session length and
    mean rating of clicked items, each with its interval, one row per policy.

    ``results`` as for :func:`policy_summary`: a fixed policy's table (bootstrap over sessions)
    or a list of per-seed tables (t over the per-seed means). Columns: a (metric, mean / low /
    high) MultiIndex. Sessions without a click have no mean rating and are left out of it.
    """
    rows = {}
    for name, result in results.items():
        tables = [result] if isinstance(result, pd.DataFrame) else result
        tables = [t.assign(ctr=t["return"] / t["length"]) for t in tables]
        row = {}
        for label, column in ON_POLICY_METRICS.items():
            if isinstance(result, pd.DataFrame):
                mean, low, high = mean_ci(tables[0][column], confidence)
            else:
                mean, low, high = t_interval([t[column].mean() for t in tables], confidence)
            row |= {(label, "mean"): mean, (label, "low"): low, (label, "high"): high}
        rows[name] = row
    return pd.DataFrame(rows).T
