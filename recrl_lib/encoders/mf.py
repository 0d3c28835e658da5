"""Matrix factorisation fitted with BPR: score(u, i) = user[u] · item[i] + bias[i].

Bayesian Personalised Ranking (Rendle et al., 2009) learns from implicit feedback: for a
positive pair (u, i) and a sampled item j, it maximises log σ(score(u, i) − score(u, j)).
The item side is an :class:`ItemTable`, so items can be text vectors, ID embeddings or both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from recrl_lib.encoders.history import ItemTable


class MatrixFactorization(nn.Module):
    """users [U, dim] · items [N, dim] (+ a per-item bias) -> scores."""

    def __init__(self, n_users: int, items: ItemTable, *, init_std: float = 0.1):
        super().__init__()
        self.items = items
        self.users = nn.Embedding(n_users, items.dim)
        nn.init.normal_(self.users.weight, std=init_std)
        self.item_bias = nn.Parameter(torch.zeros(items.n_items))

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users: [B], items: [B] -> scores [B]"""
        return (self.users(users) * self.items(items)).sum(-1) + self.item_bias[items]

    @torch.no_grad()
    def score_all(self) -> torch.Tensor:
        """[U, N]: every user's score for every item."""
        return self.users.weight @ self.items.all().T + self.item_bias


def fit_bpr(
    model: MatrixFactorization,
    users: torch.Tensor,
    items: torch.Tensor,
    *,
    negative_pool: torch.Tensor | None = None,
    epochs: int = 20,
    batch_size: int = 2048,
    lr: float = 0.01,
    l2: float = 1e-4,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Fit ``model`` on positive pairs (users[k], items[k]); returns the mean loss per epoch.

    Negatives are drawn uniformly from ``negative_pool`` (default: all items); keep held-out
    items out of it so training never sees them. ``l2`` penalises the batch's vectors.
    """
    if users.shape != items.shape or users.ndim != 1 or len(users) == 0:
        raise ValueError(
            "users and items must be equal-length 1-D tensors, "
            f"got {tuple(users.shape)} and {tuple(items.shape)}"
        )
    device = model.item_bias.device
    users, items = users.to(device), items.to(device)
    if negative_pool is None:
        negative_pool = torch.arange(model.items.n_items)
    pool = negative_pool.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in tqdm(range(epochs), desc="BPR", unit="epoch", disable=not progress):
        order = torch.randperm(len(users), generator=generator, device=device)
        total = 0.0
        for start in range(0, len(users), batch_size):
            batch = order[start : start + batch_size]
            u, i = users[batch], items[batch]
            j = pool[torch.randint(len(pool), (len(batch),), generator=generator, device=device)]
            user_vec, pos_vec, neg_vec = model.users(u), model.items(i), model.items(j)
            margin = (
                (user_vec * (pos_vec - neg_vec)).sum(-1) + model.item_bias[i] - model.item_bias[j]
            )
            penalty = user_vec.pow(2).sum() + pos_vec.pow(2).sum() + neg_vec.pow(2).sum()
            loss = -F.logsigmoid(margin).mean() + l2 * penalty / len(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"BPR loss became {loss.item()}: lower the learning rate (lr={lr}) or raise l2"
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        history.append(total / len(users))
    return history
