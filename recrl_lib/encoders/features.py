"""Recommender-side item knowledge: what a recommender computes from its own training data.

None of this is the simulator's hidden world: the recommender counts and averages the
*training* ratings, and fits its own factorisation (another seed, another size) on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recrl_lib.datasets import MovieLens100K
from recrl_lib.encoders.history import ItemTable
from recrl_lib.encoders.mf import MatrixFactorization, fit_bpr


@dataclass
class CatalogueStats:
    """Per-item statistics of the training split, [N] each, plus the catalogue's genres."""

    count: torch.Tensor  # training ratings of the item
    mean_rating: torch.Tensor  # mean training rating, shrunk toward the global mean (1..5)
    genres: torch.Tensor  # [N, G] multi-hot, from the item metadata

    @property
    def n_items(self) -> int:
        return len(self.count)


def catalogue_stats(
    data: MovieLens100K, *, items_seen: torch.Tensor | None = None, prior_weight: float = 10.0
) -> CatalogueStats:
    """Count and average each item's training ratings.

    The mean is shrunk toward the global mean with ``prior_weight`` pseudo-ratings, so an item
    rated 5 once is not taken for a masterpiece. ``items_seen`` ([N] bool) keeps only the
    ratings of those items (the others look unrated): the honest setting for cold start.
    """
    train = data.train
    if items_seen is not None:
        train = train[items_seen.cpu().numpy()[train["item"].to_numpy()]]
    stats = train.groupby("item")["rating"].agg(["sum", "count"])
    stats = stats.reindex(range(data.n_items), fill_value=0)
    prior = train["rating"].mean()
    mean = (stats["sum"] + prior_weight * prior) / (stats["count"] + prior_weight)
    return CatalogueStats(
        count=torch.tensor(stats["count"].to_numpy(), dtype=torch.float32),
        mean_rating=torch.tensor(mean.to_numpy(), dtype=torch.float32),
        genres=torch.tensor(data.genre_matrix),
    )


def fit_recommender_mf(
    data: MovieLens100K,
    *,
    dim: int = 32,
    epochs: int = 30,
    seed: int = 1,
    items_seen: torch.Tensor | None = None,
) -> MatrixFactorization:
    """The recommender's own BPR factorisation of the training positives (its seed, its size).

    ``items_seen`` ([N] bool) keeps only those items' ratings and never samples the others as
    negatives. The global random state is left as it was.
    """
    train = data.train
    if items_seen is not None:
        train = train[items_seen.cpu().numpy()[train["item"].to_numpy()]]
    positives = train[train["positive"]]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the factorisation's initial vectors
        mf = MatrixFactorization(data.n_users, ItemTable(data.n_items, dim=dim, id_init_std=0.1))
    pool = None if items_seen is None else torch.nonzero(items_seen).squeeze(1)
    users = torch.tensor(positives["user"].to_numpy())
    items = torch.tensor(positives["item"].to_numpy())
    fit_bpr(mf, users, items, negative_pool=pool, epochs=epochs, seed=seed, progress=False)
    return mf


def item_features(
    data: MovieLens100K,
    text_vectors: torch.Tensor | None = None,
    *,
    mf: MatrixFactorization | None = None,
    mf_dim: int = 32,
    epochs: int = 30,
    seed: int = 1,
    items_seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """[N, F] float32: text vectors (if given) ‖ the recommender's MF item vectors ‖ MF bias ‖
    z-scored mean training rating ‖ z-scored log(1 + training count) ‖ genres (multi-hot).

    The genres are the item metadata the hand-written rules read, so a network given these
    features knows everything about an item that a rule of the course knows.

    ``mf`` reuses a :func:`fit_recommender_mf` model; otherwise one is fitted with ``mf_dim``,
    ``epochs`` and ``seed``. ``items_seen`` ([N] bool) restricts the fit and the statistics to
    those items (the others get zeros, but for their genres): the honest setting for a
    cold-start experiment.
    """
    if mf is None:
        mf = fit_recommender_mf(data, dim=mf_dim, epochs=epochs, seed=seed, items_seen=items_seen)
    vectors = mf.items.id_embedding.weight.detach().cpu()
    bias = mf.item_bias.detach().cpu()[:, None]
    stats = catalogue_stats(data, items_seen=items_seen)

    def z(x: torch.Tensor) -> torch.Tensor:
        x = x.double().numpy()
        return torch.tensor((x - x.mean()) / (x.std() + 1e-8), dtype=torch.float32)[:, None]

    mf_part = vectors / vectors.norm(dim=1).mean()
    parts = [mf_part, bias, z(stats.mean_rating), z(stats.count.log1p())]
    if items_seen is not None:
        unseen = ~items_seen.cpu()
        parts = [torch.where(unseen[:, None], torch.zeros_like(p), p) for p in parts]
    parts.append(stats.genres.float())  # metadata: known for a new item too
    if text_vectors is not None:
        parts.insert(0, text_vectors.float().cpu())
    return torch.cat(parts, dim=1)
