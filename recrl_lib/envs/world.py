"""The simulated world, built from MovieLens: hidden user and item vectors, quality, clickbait.

The world is "reality": it is fitted to *all* the ratings, with its own model and seed, and
everything in it is *hidden* from agents, which see only the simulator's observation. A
recommender is an outsider: it knows only what it computes from the training split.

- ``user_vectors [U, D]``, ``item_vectors [N, D]``, ``item_bias [N]``: a BPR matrix
  factorisation fitted to the positives; ``affinity(u, i) = p_u · q_i + b_i``,
  standardised over all pairs so that config scales read in standard deviations.
- ``item_quality [N]`` in [0, 1]: the item's shrunk mean rating, (mean - 1) / 4.
- ``clickbait [N]`` bool: the lowest-quality items among the more-watched half (widely
  watched, poorly rated); the simulator boosts their appeal and makes them worthless.
- ``genres [N, G]`` multi-hot, ``user_features [U, F]`` demographics, ``cohorts [U]``,
  ``popularity [N]`` ratings per item.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recrl_lib.config import cache_dir, warn_unwritable_cache
from recrl_lib.datasets import MovieLens100K
from recrl_lib.encoders import ItemTable, MatrixFactorization, fit_bpr


@dataclass
class World:
    user_vectors: torch.Tensor  # [U, D]
    item_vectors: torch.Tensor  # [N, D]
    item_bias: torch.Tensor  # [N]
    item_quality: torch.Tensor  # [N] in [0, 1]
    clickbait: torch.Tensor  # [N] bool
    genres: torch.Tensor  # [N, G] float multi-hot
    user_features: torch.Tensor  # [U, F]
    cohorts: torch.Tensor  # [U] long
    popularity: torch.Tensor  # [N] ratings per item in the data the world was fitted to
    affinity_mean: float = 0.0
    affinity_std: float = 1.0

    @property
    def n_users(self) -> int:
        return self.user_vectors.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_vectors.shape[0]

    @property
    def n_cohorts(self) -> int:
        return int(self.cohorts.max()) + 1

    def to(self, device) -> World:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return World(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in moved.items()})

    def affinity(self, user_vectors: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Standardised affinity. user_vectors: [B, D]; items: [B, K] -> [B, K]"""
        raw = (user_vectors[:, None, :] * self.item_vectors[items]).sum(-1) + self.item_bias[items]
        return (raw - self.affinity_mean) / self.affinity_std

    def affinity_all(self, user_vectors: torch.Tensor) -> torch.Tensor:
        """user_vectors: [B, D] -> [B, N]"""
        raw = user_vectors @ self.item_vectors.T + self.item_bias
        return (raw - self.affinity_mean) / self.affinity_std

    def sample_users(self, cohort: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """New synthetic users [n, D] from a cohort: its mean plus Gaussian noise of its
        per-dimension spread."""
        if not 0 <= cohort < self.n_cohorts:
            raise ValueError(f"cohort must be in 0..{self.n_cohorts - 1}, got {cohort}")
        members = self.user_vectors[self.cohorts == cohort]
        mean = members.mean(0)
        std = members.std(0) if len(members) > 1 else members.new_zeros(members.shape[1])
        noise = torch.randn(n, members.shape[1], generator=generator, device=generator.device)
        return mean + noise.to(mean) * std

    @staticmethod
    def random(
        n_users: int = 50, n_items: int = 40, dim: int = 8, n_genres: int = 5, seed: int = 0
    ) -> World:
        """A small random world for tests and benchmarks (no data needed)."""
        g = torch.Generator().manual_seed(seed)
        genres = (torch.rand(n_items, n_genres, generator=g) < 0.3).float()
        genres[torch.arange(n_items), torch.randint(n_genres, (n_items,), generator=g)] = 1.0
        quality = torch.rand(n_items, generator=g)
        users = torch.randn(n_users, dim, generator=g)
        popularity = torch.rand(n_items, generator=g)
        world = World(
            user_vectors=users,
            item_vectors=torch.randn(n_items, dim, generator=g) / dim**0.5,
            item_bias=torch.zeros(n_items),
            item_quality=quality,
            clickbait=clickbait_items(quality, popularity, 0.1),
            genres=genres,
            user_features=torch.zeros(n_users, 1),
            cohorts=kmeans(users, 3, seed=seed),
            popularity=popularity,
        )
        return _standardise(world)


def _standardise(world: World) -> World:
    raw = world.user_vectors @ world.item_vectors.T + world.item_bias
    world.affinity_mean, world.affinity_std = raw.mean().item(), raw.std().item()
    return world


def kmeans(x: torch.Tensor, k: int, *, iterations: int = 50, seed: int = 0) -> torch.Tensor:
    """Lloyd's k-means on rows of x [M, D] -> labels [M] in 0..k-1 (k-means++ start)."""
    g = torch.Generator().manual_seed(seed)
    x = x.float().cpu()
    centres = x[torch.randint(len(x), (1,), generator=g)]
    for _ in range(1, k):  # k-means++: next centre drawn with probability ~ squared distance
        d2 = torch.cdist(x, centres).min(1).values ** 2
        centres = torch.cat([centres, x[torch.multinomial(d2 / d2.sum(), 1, generator=g)]])
    for _ in range(iterations):
        labels = torch.cdist(x, centres).argmin(1)
        new = torch.stack(
            [x[labels == c].mean(0) if (labels == c).any() else centres[c] for c in range(k)]
        )
        if torch.allclose(new, centres):
            break
        centres = new
    return torch.cdist(x, centres).argmin(1)


def clickbait_items(quality: torch.Tensor, counts: torch.Tensor, fraction: float) -> torch.Tensor:
    """[N] bool: the ``fraction · N`` lowest-quality items among the more-watched half —
    widely watched, poorly rated: what clickbait looks like in a log."""
    watched = counts >= counts.median()
    n = int(round(fraction * len(quality)))
    ranked = torch.argsort(torch.where(watched, quality, torch.full_like(quality, float("inf"))))
    chosen = torch.zeros(len(quality), dtype=torch.bool)
    chosen[ranked[:n]] = True
    return chosen


def user_features(data: MovieLens100K) -> torch.Tensor:
    """[U, F] demographics: age / 100, is-female, one-hot occupation."""
    occupations = sorted(data.users["occupation"].unique())
    one_hot = np.eye(len(occupations))[data.users["occupation"].map(occupations.index).to_numpy()]
    age = data.users["age"].to_numpy()[:, None] / 100.0
    female = (data.users["gender"] == "F").to_numpy()[:, None]
    return torch.tensor(np.hstack([age, female, one_hot]), dtype=torch.float32)


WORLD_CACHE_DIR = cache_dir("worlds")


def _cache_file(folder: Path, data: MovieLens100K, ratings: pd.DataFrame, settings: dict) -> Path:
    """A file named by everything the fit depends on: the ratings, genres and users, the settings,
    and the source of the code that fits (so an edit to it never reads a stale world)."""
    digest = hashlib.sha256()
    for table in (ratings[["user", "item", "rating"]], data.users[["age", "gender", "occupation"]]):
        digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    digest.update(np.ascontiguousarray(data.genre_matrix).tobytes())
    digest.update(repr(sorted(settings.items())).encode())
    code = (_fit_world, fit_bpr, MatrixFactorization, ItemTable, clickbait_items, kmeans)
    for part in (*code, user_features, _standardise):
        digest.update(inspect.getsource(part).encode())
    digest.update(torch.__version__.encode())
    return folder / f"world-{digest.hexdigest()[:24]}.pt"


def build_world(
    data: MovieLens100K,
    *,
    ratings: pd.DataFrame | None = None,
    dim: int = 16,
    epochs: int = 30,
    clickbait_fraction: float = 0.1,
    n_cohorts: int = 4,
    seed: int = 0,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = WORLD_CACHE_DIR,
) -> World:
    """Fit the hidden world to ``ratings`` (default: all of MovieLens; see the module docstring).

    Pass ``ratings=data.train`` to validate the model on the held-out split. The global random
    state is left as it was: the fit draws from its own generators seeded with ``seed``. A fitted
    world is kept in ``cache_dir`` (``None``: no cache) and read back on the next identical call.
    """
    ratings = data.ratings if ratings is None else ratings
    settings = {"dim": dim, "epochs": epochs, "clickbait": clickbait_fraction, "seed": seed}
    settings |= {"cohorts": n_cohorts, "users": data.n_users, "items": data.n_items}
    cached = None if cache_dir is None else _cache_file(Path(cache_dir), data, ratings, settings)
    if cached is not None and cached.is_file():
        return World(**torch.load(cached, map_location="cpu", weights_only=True))
    world = _fit_world(data, ratings, dim, epochs, clickbait_fraction, n_cohorts, seed, progress)
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(".part")
            torch.save({f.name: getattr(world, f.name) for f in fields(world)}, partial)
            partial.replace(cached)
        except OSError as error:
            warn_unwritable_cache(cached, error)
    return world


def _fit_world(data, ratings, dim, epochs, clickbait_fraction, n_cohorts, seed, progress) -> World:
    positives = ratings[ratings["positive"]]
    users = torch.tensor(positives["user"].to_numpy())
    items = torch.tensor(positives["item"].to_numpy())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the factorisation's initial vectors
        table = ItemTable(data.n_items, dim=dim, id_init_std=0.1)
        mf = MatrixFactorization(data.n_users, table)
    fit_bpr(mf, users, items, epochs=epochs, lr=0.01, l2=1e-4, seed=seed, progress=progress)
    # Item quality: mean rating shrunk toward the global mean with 10 pseudo-ratings.
    stats = ratings.groupby("item")["rating"].agg(["sum", "count"])
    stats = stats.reindex(range(data.n_items), fill_value=0)
    prior, weight = ratings["rating"].mean(), 10.0
    mean_rating = (stats["sum"] + prior * weight) / (stats["count"] + weight)
    quality = torch.tensor(((mean_rating - 1.0) / 4.0).to_numpy(), dtype=torch.float32)
    user_vectors = mf.users.weight.detach().clone()
    counts = torch.tensor(stats["count"].to_numpy(), dtype=torch.float32)
    world = World(
        user_vectors=user_vectors,
        item_vectors=mf.items.id_embedding.weight.detach().clone(),
        item_bias=mf.item_bias.detach().clone(),
        item_quality=quality,
        clickbait=clickbait_items(quality, counts, clickbait_fraction),
        genres=torch.tensor(data.genre_matrix),
        user_features=user_features(data),
        cohorts=kmeans(user_vectors, n_cohorts, seed=seed),
        popularity=counts,
    )
    return _standardise(world)
