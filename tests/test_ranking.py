"""Ranking metrics on hand-computed cases, their edge cases, and scikit-learn's NDCG."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import ndcg_score

from recrl_lib.evaluation.ranking import (
    average_precision_at_k,
    catalogue_coverage,
    f1_at_k,
    gini_of_exposure,
    hit_rate_at_k,
    intra_list_diversity,
    mean_pairwise_jaccard,
    ndcg_at_k,
    novelty,
    precision_at_k,
    ranking_report,
    rating_errors,
    recall_at_k,
    reciprocal_rank,
)


def relevant_of(items: list[list[int]], n_items: int) -> torch.Tensor:
    relevant = torch.zeros(len(items), n_items, dtype=torch.bool)
    for u, row in enumerate(items):
        relevant[u, row] = True
    return relevant


def test_every_metric_on_a_hand_computed_list():
    ranked = torch.tensor([[3, 1, 0]])  # hits at position 2 only
    relevant = relevant_of([[1, 2]], 5)
    assert precision_at_k(ranked, relevant, 3).item() == pytest.approx(1 / 3)
    assert recall_at_k(ranked, relevant, 3).item() == pytest.approx(1 / 2)
    assert f1_at_k(ranked, relevant, 3).item() == pytest.approx(2 * (1 / 3) * (1 / 2) / (5 / 6))
    assert hit_rate_at_k(ranked, relevant, 3).item() == 1
    assert reciprocal_rank(ranked, relevant, 3).item() == pytest.approx(1 / 2)
    assert average_precision_at_k(ranked, relevant, 3).item() == pytest.approx((1 / 2) / 2)
    dcg, idcg = 1 / math.log2(3), 1 + 1 / math.log2(3)
    assert ndcg_at_k(ranked, relevant.double(), 3).item() == pytest.approx(dcg / idcg)
    # At k = 1 the list shows item 3 only: a miss everywhere.
    assert reciprocal_rank(ranked, relevant, 1).item() == 0
    assert ndcg_at_k(ranked, relevant.double(), 1).item() == 0


def test_k_larger_than_the_list_counts_the_missing_slots_as_misses():
    ranked = torch.tensor([[1, 2], [4, -1]])  # user 1's list has one empty slot
    relevant = relevant_of([[1, 2], [4]], 5)
    assert precision_at_k(ranked, relevant, 5).tolist() == [2 / 5, 1 / 5]
    assert recall_at_k(ranked, relevant, 5).tolist() == [1, 1]
    assert ndcg_at_k(ranked, relevant.double(), 5).tolist() == [1, 1]
    assert average_precision_at_k(ranked, relevant, 5).tolist() == [1, 1]


def test_a_user_with_no_relevant_item_is_undefined_not_zero():
    ranked = torch.tensor([[0, 1], [0, 1]])
    relevant = relevant_of([[1], []], 3)
    metrics = (precision_at_k, recall_at_k, f1_at_k, hit_rate_at_k, reciprocal_rank)
    for metric in (*metrics, average_precision_at_k):
        values = metric(ranked, relevant, 2)
        assert not values[0].isnan() and values[1].isnan(), metric.__name__
    assert ndcg_at_k(ranked, relevant.double(), 2)[1].isnan()
    report = ranking_report(ranked, relevant, 2)
    assert report["users"] == 1 and report["recall@2"] == 1.0  # the NaN user left out


def brute_force(ranked: list[int], relevant: set[int], k: int) -> dict[str, float]:
    top = [i for i in ranked[:k] if i >= 0]
    hits = [i in relevant for i in top]
    precision_at = [sum(hits[: j + 1]) / (j + 1) for j in range(len(hits))]
    return {
        "precision": sum(hits) / k,
        "recall": sum(hits) / len(relevant),
        "ap": sum(p for p, h in zip(precision_at, hits) if h) / min(k, len(relevant)),
        "rr": next((1 / (j + 1) for j, h in enumerate(hits) if h), 0.0),
    }


def test_metrics_match_a_loop_over_random_lists():
    rng = np.random.default_rng(0)
    n_users, n_items, length = 30, 20, 8
    ranked = torch.tensor(np.stack([rng.permutation(n_items)[:length] for _ in range(n_users)]))
    relevant = torch.tensor(rng.random((n_users, n_items)) < 0.25)
    relevant[:, 0] = True  # every user has a relevant item
    for k in (1, 5, 8, 12):
        ours = {
            "precision": precision_at_k(ranked, relevant, k),
            "recall": recall_at_k(ranked, relevant, k),
            "ap": average_precision_at_k(ranked, relevant, k),
            "rr": reciprocal_rank(ranked, relevant, k),
        }
        for u in range(n_users):
            expected = brute_force(ranked[u].tolist(), set(relevant[u].nonzero()[:, 0].tolist()), k)
            for name, value in expected.items():
                assert ours[name][u].item() == pytest.approx(value), (name, k, u)


@pytest.mark.parametrize("k", [1, 3, 10, 25])
def test_ndcg_equals_scikit_learn_with_linear_gains(k):
    rng = np.random.default_rng(k)
    n_users, n_items = 40, 25
    gains = rng.integers(0, 4, (n_users, n_items)).astype(float)  # graded, with ties in gain
    gains[gains.sum(1) == 0, 0] = 1.0
    scores = rng.permutation(n_users * n_items).reshape(n_users, n_items)  # no ties in score
    ranked = torch.tensor(np.argsort(-scores, axis=1))
    ours = ndcg_at_k(ranked, torch.tensor(gains), k).numpy()
    theirs = [ndcg_score(gains[u : u + 1], scores[u : u + 1], k=k) for u in range(n_users)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_equal_gains_in_either_order_give_the_same_ndcg():
    gains = torch.tensor([[2.0, 2.0, 1.0, 0.0]])
    first = ndcg_at_k(torch.tensor([[0, 1, 2]]), gains, 3)
    second = ndcg_at_k(torch.tensor([[1, 0, 2]]), gains, 3)
    assert first.item() == second.item() == 1.0


@pytest.mark.parametrize(
    ("ranked", "k", "message"),
    [
        ([[0, 0, 1]], 2, "appears twice"),
        ([[0, 7]], 2, "outside"),
        ([[0, 1]], 0, "positive int"),
        ([[0, 1]], 2.0, "positive int"),
    ],
)
def test_bad_lists_and_k_get_one_clear_error(ranked, k, message):
    with pytest.raises(ValueError, match=message):
        precision_at_k(torch.tensor(ranked), relevant_of([[1]], 3), k)


def test_negative_gains_are_refused():
    with pytest.raises(ValueError, match=">= 0"):
        ndcg_at_k(torch.tensor([[0]]), torch.tensor([[-1.0, 1.0]]), 1)


def test_catalogue_metrics_by_hand():
    ranked = torch.tensor([[3, 2], [3, -1]])  # exposure per item: [0, 0, 1, 2]
    assert catalogue_coverage(ranked, 4) == 0.5
    # sorted x = [0, 0, 1, 2]; Σ (2i − n − 1) x_(i) = 1·1 + 3·2 = 7; / (n Σx) = 4 · 3
    assert gini_of_exposure(ranked, 4) == pytest.approx(7 / 12)
    assert gini_of_exposure(torch.tensor([[0, 1], [2, 3]]), 4) == 0.0
    popularity = torch.tensor([0.5, 0.5, 0.25, 0.5])
    assert novelty(ranked, popularity).tolist() == [pytest.approx((1 + 2) / 2), 1.0]
    with pytest.raises(ValueError, match="smooth"):
        novelty(ranked, torch.tensor([0.5, 0.5, 0.0, 0.5]))


def test_diversity_is_the_mean_cosine_distance_over_pairs():
    vectors = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 0.0]])
    lists = torch.tensor([[0, 1, 2], [0, 2, -1], [1, -1, -1], [0, 3, -1]])
    diversity = intra_list_diversity(lists, vectors)
    # pairs of list 0: (0,1) distance 1, (0,2) 0, (1,2) 1 -> 2/3
    assert diversity[0].item() == pytest.approx(2 / 3)
    assert diversity[1].item() == pytest.approx(0.0)
    assert diversity[2].isnan()
    assert diversity[3].item() == pytest.approx(1.0)  # a zero vector is like no other


def test_rating_errors_by_hand():
    errors = rating_errors([3.0, 4.0, 5.0], [4.0, 4.0, 3.0])
    assert errors == {"MAE": pytest.approx(1.0), "RMSE": pytest.approx(math.sqrt(5 / 3))}
    with pytest.raises(ValueError, match="one length"):
        rating_errors([1.0], [1.0, 2.0])


def test_tensors_on_another_device_get_one_clear_error():
    ranked = torch.tensor([[0, 1]])
    with pytest.raises(ValueError, match="move them together"):
        precision_at_k(ranked, relevant_of([[1]], 3).to("meta"), 1)


def test_mean_pairwise_jaccard_matches_scikit_learn_and_a_hand_computation():
    from sklearn.metrics import jaccard_score

    sets = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool)
    # pairs with a non-empty union: (0,1) 1/3, (0,2) 0, (0,3) 1, (1,2) 0, (1,3) 1/3, (2,3) 0
    assert mean_pairwise_jaccard(sets) == pytest.approx((1 / 3 + 1 + 1 / 3) / 6)
    g = torch.Generator().manual_seed(0)
    sets = torch.rand(12, 30, generator=g) < 0.3
    pairs = [(a, b) for a in range(12) for b in range(12) if a != b]
    reference = np.mean([jaccard_score(sets[a].numpy(), sets[b].numpy()) for a, b in pairs])
    assert mean_pairwise_jaccard(sets) == pytest.approx(reference)
    assert mean_pairwise_jaccard(torch.ones(3, 5, dtype=torch.bool)) == 1.0
    with pytest.raises(ValueError, match="every set is empty"):
        mean_pairwise_jaccard(torch.zeros(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool tensor"):
        mean_pairwise_jaccard(torch.ones(3, 5))
