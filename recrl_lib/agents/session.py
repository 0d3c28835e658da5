"""What a recommender's networks read from an observed session, shared by DQN and PPO.

``SessionReader`` turns the last ``window`` steps of the session log (items, clicks, ratings),
the step, the session's totals, optional user features and, for a recommender that knows its
returning users, their vector from its own factorisation of the training split (read by the
id in ``obs["user"]``) into one input vector for an MLP; ``SessionTrunk`` puts a tanh MLP on
top (PPO's actor and critic, off-policy REINFORCE); ``ItemMask`` is the set of items a network
may recommend (``restrict_to``: train on a warm catalogue, test on cold items) and, with the
session log, its valid actions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from recrl_lib.encoders.history import (
    GRUHistoryEncoder,
    ItemTable,
    MeanHistoryEncoder,
    TransformerHistoryEncoder,
)
from recrl_lib.envs.simulator import shown_items

HISTORY_ENCODERS = {
    "mean": MeanHistoryEncoder,
    "gru": GRUHistoryEncoder,
    "transformer": TransformerHistoryEncoder,
}


def user_rows(obs: dict[str, torch.Tensor], n_known: int) -> torch.Tensor:
    """[B] long: each row's user id from ``obs["user"]`` ([B, 1]), with an unknown user (id -1)
    mapped to row ``n_known`` — the extra row that tables of known users keep for them."""
    if "user" not in obs:
        raise KeyError(
            "this policy reads who logged in: build the simulator with "
            "SimulatorConfig(observe_user=True)"
        )
    users = obs["user"][:, 0]
    if (users >= n_known).any() or (users < -1).any():
        bad = users[(users >= n_known) | (users < -1)][0].item()
        raise ValueError(
            f"user id {bad} is not one of the recommender's {n_known} known users "
            f"(0..{n_known - 1}) or -1 (unknown): build the user table from the simulator's data"
        )
    return torch.where(users < 0, n_known, users)


class SessionReader(nn.Module):
    """obs -> [B, D + 4 + n_features (+ P)]: the history encoder's state h of the last ``window``
    steps (items with their (click, rating) responses) ‖ step ‖ session totals (‖ features)
    (‖ the user's past: row ``obs["user"]`` of ``user_vectors`` [U, P], zeros for an unknown
    user (id -1); the recommender's own MF user vectors, fitted on the training split)."""

    def __init__(
        self,
        items: ItemTable,
        history: str,
        window: int,
        n_features: int,
        user_vectors: torch.Tensor | None = None,
    ):
        super().__init__()
        if history not in HISTORY_ENCODERS:
            raise ValueError(f"history must be one of {sorted(HISTORY_ENCODERS)}, got {history!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1 step, got {window}")
        if user_vectors is not None and user_vectors.ndim != 2:
            raise ValueError(f"user_vectors must be [U, P], got {tuple(user_vectors.shape)}")
        self.window, self.n_features = window, n_features
        past = 0 if user_vectors is None else user_vectors.shape[1]
        self.out_dim = items.dim + 4 + n_features + past
        self.encoder = HISTORY_ENCODERS[history](items, n_responses=2)
        if user_vectors is None:
            self.user_vectors = None
        else:  # a frozen buffer; one row of zeros at the end for an unknown user
            known = user_vectors.detach().float()
            self.register_buffer("user_vectors", torch.cat([known, known.new_zeros(1, past)]))

    def forward(self, obs: dict[str, torch.Tensor], table: torch.Tensor) -> torch.Tensor:
        """``table``: [N, D], the item vectors (``items.all()``) the history is read with."""
        w = self.window
        responses = torch.stack([obs["clicks"][:, -w:], obs["ratings"][:, -w:]], dim=-1)
        h = self.encoder(obs["items"][:, -w:], obs["mask"][:, -w:], responses, table=table)
        inputs = [h, obs["step"], obs["session"]]
        if self.n_features:
            if "features" not in obs:
                raise KeyError(
                    "this network reads user features: build the simulator with "
                    "SimulatorConfig(observe_features=True), or the network with n_features=0"
                )
            inputs.append(obs["features"])
        if self.user_vectors is not None:
            inputs.append(self.user_vectors[user_rows(obs, len(self.user_vectors) - 1)])
        return torch.cat(inputs, dim=-1)


class ItemMask(nn.Module):
    """The items a network may recommend ([N] bool buffer ``allowed``; all by default)."""

    def __init__(self, n_items: int):
        super().__init__()
        self.register_buffer("allowed", torch.ones(n_items, dtype=torch.bool))

    def restrict_to(self, allowed: torch.Tensor | None) -> None:
        """Recommend only items where ``allowed`` ([N] bool) is True; ``None`` allows all."""
        if allowed is None:
            self.allowed.fill_(True)
            return
        if allowed.shape != self.allowed.shape or allowed.dtype != torch.bool:
            got = f"{allowed.dtype} {tuple(allowed.shape)}"
            raise ValueError(f"allowed must be a [{len(self.allowed)}] bool tensor, got {got}")
        if not allowed.any():
            raise ValueError("allowed must let at least one item through")
        self.allowed.copy_(allowed.to(self.allowed.device))

    def valid_actions(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, N] bool: allowed items not in the observed session log (no repeats)."""
        return self.allowed & ~shown_items(obs, len(self.allowed))


def layer_init(layer: nn.Linear, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights with ``gain``, constant bias: keeps activations' scale through depth."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


class SessionTrunk(nn.Module):
    """The observed session (``SessionReader``) -> a tanh MLP -> [B, out]: the trunk of PPO's
    actor and critic, and of the off-policy REINFORCE policy."""

    def __init__(
        self, items, history, window, n_features, hidden, out, out_gain, user_vectors=None
    ):
        super().__init__()
        self.reader = SessionReader(items, history, window, n_features, user_vectors)
        self.mlp = nn.Sequential(
            layer_init(nn.Linear(self.reader.out_dim, hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden, out), gain=out_gain),
        )

    def forward(self, obs: dict[str, torch.Tensor], table: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.reader(obs, table))
