"""Recommender-side item features: what a recommender knows about each item from its own data.

These are *not* the simulator's hidden vectors: the recommender fits its own factorisation
(another seed, another size) on the training ratings and adds simple rating statistics.
"""

from __future__ import annotations

import numpy as np
import torch

from recrl_lib.datasets import MovieLens100K
from recrl_lib.encoders.history import ItemTable
from recrl_lib.encoders.mf import MatrixFactorization, fit_bpr


def item_features(
    data: MovieLens100K,
    text_vectors: torch.Tensor | None = None,
    *,
    mf_dim: int = 32,
    epochs: int = 30,
    seed: int = 1,
    items_seen: torch.Tensor | None = None,
) -> torch.Tensor:
    """[N, F] float32: text vectors (if given) ‖ BPR-MF item vectors ‖ MF bias ‖ z-scored mean
    training rating ‖ z-scored log(1 + training count).

    ``items_seen`` ([N] bool) restricts the fit and the statistics to those items (the others
    get zeros): the honest setting for a cold-start experiment.
    """
    train = data.train
    if items_seen is not None:
        train = train[items_seen.cpu().numpy()[train["item"].to_numpy()]]
    positives = train[train["positive"]]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    mf = MatrixFactorization(data.n_users, ItemTable(data.n_items, dim=mf_dim, id_init_std=0.1))
    pool = None if items_seen is None else torch.nonzero(items_seen).squeeze(1)
    fit_bpr(mf, torch.tensor(positives["user"].to_numpy()), torch.tensor(positives["item"].to_numpy()),
            negative_pool=pool, epochs=epochs, seed=seed, progress=False)  # fmt: skip
    torch.random.set_rng_state(generator_state)
    vectors = mf.items.id_embedding.weight.detach().cpu()
    bias = mf.item_bias.detach().cpu()[:, None]
    stats = train.groupby("item")["rating"].agg(["mean", "count"]).reindex(range(data.n_items))
    mean_rating = stats["mean"].fillna(train["rating"].mean()).to_numpy()
    log_count = np.log1p(stats["count"].fillna(0).to_numpy())

    def z(x: np.ndarray) -> torch.Tensor:
        return torch.tensor((x - x.mean()) / (x.std() + 1e-8), dtype=torch.float32)[:, None]

    parts = [vectors / vectors.norm(dim=1).mean(), bias, z(mean_rating), z(log_count)]
    if items_seen is not None:
        unseen = ~items_seen.cpu()
        parts = [torch.where(unseen[:, None], torch.zeros_like(p), p) for p in parts]
    if text_vectors is not None:
        parts.insert(0, text_vectors.float().cpu())
    return torch.cat(parts, dim=1)
