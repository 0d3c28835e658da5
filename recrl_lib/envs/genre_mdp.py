"""A small tabular MDP derived from the simulator's dynamics, with exact P and R.

State  s = (budget level b ∈ {0..B}, genre of the last click g ∈ {0..G}, G meaning "none").
Action a ∈ {0..G−1}: recommend a good item of genre a; a = G: recommend clickbait.

Click probabilities come from the simulator's world for an average user: a genre's mean
click probability over its good items, lower when it repeats the last clicked genre
(satiation), and the clickbait mean. A good click refills one budget level (capped at B),
clickbait drains one, a miss drains one; b = 0 is terminal. Reward = click.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recrl_lib.envs.simulator import SimulatorConfig
from recrl_lib.envs.world import World


@dataclass
class TabularMDP:
    """P: [S, A, S] transition probabilities, R: [S, A] expected rewards, discount gamma."""

    P: np.ndarray
    R: np.ndarray
    gamma: float
    terminal: np.ndarray  # [S] bool: absorbing states with zero reward
    state_names: list[str]
    action_names: list[str]

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]


def value_iteration(mdp: TabularMDP, *, tol: float = 1e-10, max_iter: int = 100_000):
    """Q*(s, a) = R(s, a) + γ Σ_s' P(s'|s, a) max_a' Q*(s', a'), iterated to ``tol``.

    Returns (Q* [S, A], V* [S], iterations).
    """
    q = np.zeros_like(mdp.R)
    for iteration in range(1, max_iter + 1):
        v = q.max(1)
        q_new = mdp.R + mdp.gamma * mdp.P @ v
        if np.abs(q_new - q).max() < tol:
            return q_new, q_new.max(1), iteration
        q = q_new
    raise RuntimeError(f"value iteration did not converge to {tol} in {max_iter} iterations")


def genre_mdp(
    world: World,
    config: SimulatorConfig | None = None,
    *,
    genres: tuple[str, ...] = ("Action", "Comedy", "Drama", "Thriller"),
    genre_names: tuple[str, ...] | None = None,
    budget_levels: int = 4,
    gamma: float = 0.9,
) -> TabularMDP:
    """Build the genre MDP; ``genre_names`` lists the world's genre columns (default: MovieLens)."""
    from recrl_lib.datasets import GENRES

    config = config or SimulatorConfig()
    names = list(genre_names or GENRES)
    mean_user = world.user_vectors.mean(0, keepdim=True)
    affinity = world.affinity_all(mean_user)[0]
    base = config.affinity_scale * affinity + config.click_bias
    good = ~world.clickbait

    def click_probability(logits: torch.Tensor) -> float:
        return float(torch.sigmoid(logits).mean())

    p_fresh, p_repeat = [], []
    for genre in genres:
        members = good & (world.genres[:, names.index(genre)] > 0)
        # a repeat: the genre's satiation after one click, one decay step later
        penalty = config.satiation_weight / world.genres[members].sum(1).clamp(min=1)
        p_fresh.append(click_probability(base[members]))
        p_repeat.append(click_probability(base[members] - penalty))
    p_bait = click_probability(base[world.clickbait] + config.clickbait_appeal)

    G, B = len(genres), budget_levels
    states = [(b, g) for b in range(B + 1) for g in range(G + 1)]
    index = {s: i for i, s in enumerate(states)}
    S, A = len(states), G + 1
    P, R = np.zeros((S, A, S)), np.zeros((S, A))
    terminal = np.array([b == 0 for b, _ in states])
    for (b, g), s in index.items():
        if b == 0:
            P[s, :, s] = 1.0  # absorbing, no reward
            continue
        for a in range(A):
            if a < G:
                p = p_repeat[a] if a == g else p_fresh[a]
                hit, miss = index[(min(b + 1, B), a)], index[(b - 1, g)]
            else:
                p = p_bait
                hit, miss = index[(b - 1, g)], index[(b - 1, g)]
            P[s, a, hit] += p
            P[s, a, miss] += 1 - p
            R[s, a] = p
    return TabularMDP(
        P=P, R=R, gamma=gamma, terminal=terminal,
        state_names=[f"b={b},last={'none' if g == G else genres[g]}" for b, g in states],
        action_names=[*genres, "clickbait"],
    )  # fmt: skip
