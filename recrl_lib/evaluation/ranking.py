"""Ranking metrics: how good is a top-k list, judged against what the user did next.

Every metric reads the same inputs:

- ``ranked`` [U, L] long: each user's list, best first. ``-1`` marks an empty slot (a list
  shorter than the others); an item may appear once in a list;
- ``relevant`` [U, N] bool (or ``gains`` [U, N] float ≥ 0 for NDCG): what counts as a hit.

and returns one value per user [U] (float64), so that a table can average them and an interval
can be put on them. Two cases are defined once, here:

- **k larger than the list**: the metric is computed at k all the same; the missing positions
  are empty slots, which are misses (so precision@k divides by k, as trec_eval does);
- **a user with no relevant item**: every metric is NaN (undefined, not 0: no list could do
  better), so all of them average over the same users. :func:`ranking_report` averages with
  NaNs left out and says how many users counted.

Every tensor must be on ``ranked``'s device.
"""

from __future__ import annotations

import numpy as np
import torch


def _top(ranked: torch.Tensor, k: int, n_items: int) -> torch.Tensor:
    """The first k slots of each list [U, min(k, L)], after checking the lists."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if ranked.dim() != 2 or ranked.dtype != torch.long:
        raise ValueError(f"ranked must be a [U, L] long tensor, got {ranked.dtype} {ranked.shape}")
    if ((ranked < -1) | (ranked >= n_items)).any():
        raise ValueError(f"ranked holds ids outside 0..{n_items - 1} (or -1 for an empty slot)")
    ordered = ranked.sort(dim=1).values
    if ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any():
        raise ValueError("an item appears twice in one list: a top-k list shows each item once")
    return ranked[:, :k]


def _same_device(ranked: torch.Tensor, **others: torch.Tensor) -> None:
    for name, tensor in others.items():
        if tensor.device != ranked.device:
            raise ValueError(
                f"{name} is on {tensor.device} but ranked on {ranked.device}: move them together"
            )


def _hits(ranked: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """[U, min(k, L)] bool: slot i of the list holds a relevant item."""
    _same_device(ranked, relevant=relevant)
    if relevant.dim() != 2 or relevant.dtype != torch.bool or len(relevant) != len(ranked):
        got = f"{relevant.dtype} {tuple(relevant.shape)}"
        raise ValueError(f"relevant must be a [U={len(ranked)}, N] bool tensor, got {got}")
    top = _top(ranked, k, relevant.shape[1])
    hit = relevant.gather(1, top.clamp(min=0))
    return hit & (top >= 0)


def _undefined_without_relevant(values: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    return torch.where(relevant.any(1), values, torch.full_like(values, float("nan")))


def precision_at_k(ranked: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """|top-k ∩ relevant| / k -> [U] (NaN without a relevant item)."""
    precision = _hits(ranked, relevant, k).sum(1).double() / k
    return _undefined_without_relevant(precision, relevant)


def recall_at_k(ranked: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """|top-k ∩ relevant| / |relevant| -> [U] (NaN without a relevant item)."""
    found = _hits(ranked, relevant, k).sum(1).double()
    recall = found / relevant.sum(1).clamp(min=1).double()
    return _undefined_without_relevant(recall, relevant)


def f1_at_k(ranked: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """2PR / (P + R) at k -> [U] (0 when P = R = 0; NaN without a relevant item)."""
    p, r = precision_at_k(ranked, relevant, k), recall_at_k(ranked, relevant, k)
    f1 = torch.where(p + r > 0, 2 * p * r / (p + r), p * 0)
    return _undefined_without_relevant(f1, relevant)


def hit_rate_at_k(ranked: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """1 if the top k hold any relevant item, else 0 -> [U] (NaN without a relevant item)."""
    hit = _hits(ranked, relevant, k).any(1).double()
    return _undefined_without_relevant(hit, relevant)


def reciprocal_rank(ranked: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """1 / (position of the first relevant item in the top k, from 1), 0 if none -> [U]
    (NaN without a relevant item). Its mean over users is MRR@k."""
    hit = _hits(ranked, relevant, k)
    positions = torch.arange(1, hit.shape[1] + 1, dtype=torch.float64, device=hit.device)
    rr = (hit / positions).amax(1) if hit.shape[1] else hit.sum(1).double()
    return _undefined_without_relevant(rr, relevant)


def average_precision_at_k(ranked: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """AP@k = Σ_{i ≤ k} P@i · rel_i / min(k, |relevant|) -> [U] (NaN without a relevant item).
    Its mean over users is MAP@k. The denominator is the most hits a k-list could hold."""
    hit = _hits(ranked, relevant, k).double()
    positions = torch.arange(1, hit.shape[1] + 1, dtype=torch.float64, device=hit.device)
    precision_at_i = hit.cumsum(1) / positions
    best = relevant.sum(1).clamp(min=1, max=k).double()
    return _undefined_without_relevant((precision_at_i * hit).sum(1) / best, relevant)


def ndcg_at_k(ranked: torch.Tensor, gains: torch.Tensor, k: int) -> torch.Tensor:
    """NDCG@k with linear gain -> [U] (NaN when the user has no positive gain).

    DCG@k = Σ_{i=1..k} g(item_i) / log2(i + 1), with the gain g read from ``gains`` [U, N]
    (≥ 0; e.g. 1 for a relevant item, or the rating); IDCG@k is the DCG of the best possible
    list, the k largest gains in order. NDCG = DCG / IDCG ∈ [0, 1]. (Linear gain, as
    scikit-learn's ``ndcg_score``; some papers use 2^g − 1.)
    """
    _same_device(ranked, gains=gains)
    if gains.dim() != 2 or not gains.is_floating_point() or len(gains) != len(ranked):
        got = f"{gains.dtype} {tuple(gains.shape)}"
        raise ValueError(f"gains must be a [U={len(ranked)}, N] float tensor, got {got}")
    if (gains < 0).any() or gains.isnan().any():
        raise ValueError("gains must be >= 0 and not NaN")
    top = _top(ranked, k, gains.shape[1])
    gains = gains.double()
    got = torch.where(top >= 0, gains.gather(1, top.clamp(min=0)), 0.0)
    discount = 1 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=gains.device))
    dcg = (got * discount[: got.shape[1]]).sum(1)
    ideal = gains.topk(min(k, gains.shape[1]), dim=1).values
    idcg = (ideal * discount[: ideal.shape[1]]).sum(1)
    return torch.where(idcg > 0, dcg / idcg.clamp(min=1e-300), torch.nan)


def rating_errors(predicted, actual) -> dict[str, float]:
    """MAE and RMSE of predicted ratings against the true ones (1-D, same length)."""
    predicted, actual = np.asarray(predicted, float), np.asarray(actual, float)
    if predicted.shape != actual.shape or predicted.ndim != 1 or len(actual) == 0:
        got = f"{predicted.shape}, {actual.shape}"
        raise ValueError(f"need two non-empty 1-D arrays of one length, got {got}")
    error = predicted - actual
    return {"MAE": float(np.abs(error).mean()), "RMSE": float(np.sqrt((error**2).mean()))}


def catalogue_coverage(ranked: torch.Tensor, n_items: int) -> float:
    """The share of the catalogue's ``n_items`` items shown in at least one list."""
    shown = ranked[ranked >= 0].unique()
    return len(shown) / n_items


def novelty(ranked: torch.Tensor, popularity: torch.Tensor) -> torch.Tensor:
    """Mean self-information −log2 p(i) of each list's items -> [U] (bits).

    ``popularity`` [N]: the probability p(i) that a user already knows item i (e.g. the share
    of training users who rated it, smoothed so that no item is 0: the caller decides how).
    """
    _same_device(ranked, popularity=popularity)
    if popularity.dim() != 1 or not ((popularity > 0) & (popularity <= 1)).all():
        raise ValueError(
            "popularity must be a [N] tensor of probabilities in (0, 1]: smooth the counts "
            "first, e.g. (count + 1) / (n_users + 2)"
        )
    top = _top(ranked, ranked.shape[1], len(popularity))
    information = -torch.log2(popularity.double())[top.clamp(min=0)]
    shown = (top >= 0).double()
    return (information * shown).sum(1) / shown.sum(1)


def intra_list_diversity(ranked: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Mean cosine distance 1 − cos(v_i, v_j) over the pairs of items in each list -> [U]
    (NaN for a list with fewer than 2 items). ``vectors`` [N, D]: e.g. the text vectors."""
    _same_device(ranked, vectors=vectors)
    top = _top(ranked, ranked.shape[1], len(vectors))
    unit = torch.nn.functional.normalize(vectors.double(), dim=1)[top.clamp(min=0)]  # [U, L, D]
    shown = (top >= 0).double()
    similarity = unit @ unit.transpose(1, 2) * shown[:, :, None] * shown[:, None, :]
    n = shown.sum(1)
    pairs = n * (n - 1)
    off_diagonal = similarity.sum((1, 2)) - similarity.diagonal(dim1=1, dim2=2).sum(1)
    mean_similarity = off_diagonal / pairs.clamp(min=1)
    return torch.where(pairs > 0, 1 - mean_similarity, torch.nan)


def gini(counts) -> float:
    """The Gini coefficient of a non-negative count vector ``counts`` [n] (tensor or array):
    0 = every entry equal, (n − 1) / n = everything on one entry (the most unequal n allows).

        G = Σ_i (2i − n − 1) x_(i) / (n Σ_i x_i),   x_(1) ≤ … ≤ x_(n) the sorted counts

    (half the mean absolute difference over all ordered pairs, divided by the mean). Ties need
    no care: equal values may be sorted either way.
    """
    x = counts.detach().cpu().double().numpy() if torch.is_tensor(counts) else counts
    x = np.asarray(x, dtype=float)
    if x.ndim != 1 or len(x) == 0 or not np.isfinite(x).all() or (x < 0).any():
        raise ValueError(
            f"counts must be a non-empty 1-D vector of finite values >= 0, got shape {x.shape}"
        )
    if x.sum() == 0:
        raise ValueError(
            "counts are all zero: the Gini of nothing is undefined (was anything shown or "
            "consumed?)"
        )
    n = len(x)
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * np.sort(x)).sum() / (n * x.sum()))


def gini_of_exposure(ranked: torch.Tensor, n_items: int) -> float:
    """The :func:`gini` of how often each of the ``n_items`` items is shown across all lists:
    0 = every item equally often, → 1 = all exposure on one item."""
    items = ranked[ranked >= 0]
    if len(items) == 0:
        raise ValueError("the lists are empty: nothing was shown")
    return gini(torch.bincount(items.cpu(), minlength=n_items))


def mean_popularity(items: torch.Tensor, popularity: torch.Tensor) -> float:
    """The mean ``popularity`` [N] (e.g. the recommender's training-split rating counts) of the
    ``items`` shown (long ids of any shape; ``-1`` marks an empty slot and is skipped):
    (1 / M) Σ_m popularity[items_m]. Popularity bias: this rises when a loop favours hits."""
    if items.dtype != torch.long or popularity.dim() != 1:
        raise ValueError(
            f"items must be long item ids and popularity a [N] vector, got {items.dtype} "
            f"and {tuple(popularity.shape)}"
        )
    shown = items[items >= 0]
    if len(shown) == 0:
        raise ValueError("no item was shown: the mean popularity of nothing is undefined")
    if shown.max() >= len(popularity):
        raise ValueError(f"items hold ids beyond the {len(popularity)} items of popularity")
    return float(popularity.to(shown.device).double()[shown].mean())


def mean_pairwise_jaccard(sets: torch.Tensor) -> float:
    """How alike users' sets of items are: the mean Jaccard similarity |A ∩ B| / |A ∪ B| over
    all pairs of distinct rows of ``sets`` ([U, N] bool, row u: the items user u was shown, or
    consumed). 0: no two users share an item; 1: every user has the same set. Pairs whose
    union is empty (two empty sets) have no similarity and are left out."""
    if sets.dim() != 2 or len(sets) < 2 or sets.dtype != torch.bool:
        raise ValueError(
            f"sets must be a [U, N] bool tensor with at least 2 rows, got "
            f"{tuple(sets.shape)} {sets.dtype}"
        )
    x = sets.double()
    shared = x @ x.T  # [U, U]: |A ∩ B|
    size = x.sum(1)
    union = size[:, None] + size[None, :] - shared
    pairs = ~torch.eye(len(x), dtype=torch.bool, device=x.device) & (union > 0)
    if not pairs.any():
        raise ValueError("every set is empty: there is no pair to compare")
    return float((shared[pairs] / union[pairs]).mean())


def homogenisation(
    sets: torch.Tensor, reference_sets: torch.Tensor, *, kind: str = "ratio"
) -> float:
    """How alike a recommender makes its users, relative to a reference run (the oracle's):
    ``sets`` and ``reference_sets`` are [U, N] bool, row u the items user u consumed under each
    (the same users in the same rows). With J = :func:`mean_pairwise_jaccard`,

        ratio:       J(sets) / J(reference)   (1 = as alike as under the reference; > 1 more)
        difference:  J(sets) − J(reference)   (Chaney et al. 2018 plot this "change in Jaccard
                                               index" against the ideal recommender)
    """
    if sets.shape != reference_sets.shape:
        raise ValueError(
            f"sets {tuple(sets.shape)} and reference_sets {tuple(reference_sets.shape)} must "
            "hold the same users and items, row for row"
        )
    if kind not in ("ratio", "difference"):
        raise ValueError(f"kind must be 'ratio' or 'difference', got {kind!r}")
    measured, reference = mean_pairwise_jaccard(sets), mean_pairwise_jaccard(reference_sets)
    if kind == "difference":
        return measured - reference
    if reference == 0:
        raise ValueError(
            "no two reference users share an item (Jaccard 0): the ratio is undefined; "
            "use kind='difference'"
        )
    return measured / reference


def ranking_report(
    ranked: torch.Tensor,
    relevant: torch.Tensor,
    k: int,
    *,
    gains: torch.Tensor | None = None,
    popularity: torch.Tensor | None = None,
    vectors: torch.Tensor | None = None,
) -> dict[str, float]:
    """Every metric of this module at k for one policy's lists, averaged over users (NaNs left
    out; ``users`` says how many have a relevant item). ``gains`` defaults to ``relevant``."""
    gains = relevant.double() if gains is None else gains
    per_user = {
        f"precision@{k}": precision_at_k(ranked, relevant, k),
        f"recall@{k}": recall_at_k(ranked, relevant, k),
        f"F1@{k}": f1_at_k(ranked, relevant, k),
        f"NDCG@{k}": ndcg_at_k(ranked, gains, k),
        f"MAP@{k}": average_precision_at_k(ranked, relevant, k),
        f"MRR@{k}": reciprocal_rank(ranked, relevant, k),
        f"hit rate@{k}": hit_rate_at_k(ranked, relevant, k),
    }
    report = {name: float(np.nanmean(v.cpu().numpy())) for name, v in per_user.items()}
    top = ranked[:, :k]
    report["coverage"] = catalogue_coverage(top, relevant.shape[1])
    report["Gini of exposure"] = gini_of_exposure(top, relevant.shape[1])
    if popularity is not None:
        report["novelty (bits)"] = float(np.nanmean(novelty(top, popularity).cpu().numpy()))
    if vectors is not None:
        report["diversity"] = float(np.nanmean(intra_list_diversity(top, vectors).cpu().numpy()))
    report["users"] = int(relevant.any(1).sum())
    return report


def auc_per_user(
    scores: torch.Tensor, positives: torch.Tensor, candidates: torch.Tensor
) -> torch.Tensor:
    """ROC AUC of each user's ranking: positives against the other candidates.

    scores: [U, N] float; positives, candidates: [U, N] bool (positives must be candidates).
    The negatives of user u are candidates[u] & ~positives[u]. Ties count one half.
    Returns [U] float, NaN for users with no positive or no negative.
    """
    if not (scores.shape == positives.shape == candidates.shape):
        shapes = [tuple(x.shape) for x in (scores, positives, candidates)]
        raise ValueError(
            f"shapes differ: scores {shapes[0]}, positives {shapes[1]}, candidates {shapes[2]}"
        )
    if (positives & ~candidates).any():
        raise ValueError("every positive must also be a candidate")
    negatives = candidates & ~positives
    scores = scores.double()
    # Rank each score among the user's candidates (average rank for ties): the Mann-Whitney U.
    masked = torch.where(candidates, scores, torch.full_like(scores, float("inf")))
    from scipy import stats  # here, not at the top: see intervals.py

    ranks = torch.from_numpy(stats.rankdata(masked.cpu().numpy(), axis=1)).to(scores.device)
    n_pos, n_neg = positives.sum(1).double(), negatives.sum(1).double()
    rank_sum = (ranks * positives).sum(1)
    u_stat = rank_sum - n_pos * (n_pos + 1) / 2
    auc = u_stat / (n_pos * n_neg)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, float("nan")))
