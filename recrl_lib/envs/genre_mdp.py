"""A small tabular MDP derived from the simulator's dynamics, with exact P and R.

State  s = (budget level b ∈ {0..B}, genre of the last click g ∈ {0..G}, G meaning "none").
Action a ∈ {0..G−1}: recommend a good item of genre a; a = G: recommend clickbait.

Click probabilities come from the simulator's world for an average user: a genre's mean
click probability over its most appealing (``top_fraction``) non-clickbait items, lower when
it repeats the last clicked genre (satiation), and the same for the clickbait items. A good
click refills one budget level (capped at B), clickbait drains one, a miss drains one; b = 0
is terminal. Reward = click; for clickbait, whose click the next state does not reveal, the
env pays the click probability (the expected reward, which leaves Q* unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from recrl_lib.envs.simulator import SimulatorConfig
from recrl_lib.envs.world import World


@dataclass
class TabularMDP:
    """P: [S, A, S] transition probabilities; R_next: [S, A, S] expected reward of a transition;
    R: [S, A] expected reward (= Σ_s' P · R_next); discount gamma."""

    P: np.ndarray
    R_next: np.ndarray
    gamma: float
    terminal: np.ndarray  # [S] bool: absorbing states with zero reward
    state_names: list[str]
    action_names: list[str]

    @property
    def R(self) -> np.ndarray:
        return (self.P * self.R_next).sum(-1)

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]


def bellman_backup(mdp: TabularMDP, q: np.ndarray, epsilon: float = 0.0) -> np.ndarray:
    """One Bellman optimality backup: (T Q)(s, a) = R(s, a) + γ Σ_s' P(s'|s, a) max_a' Q(s', a').

    q: [S, A] -> [S, A]. With ``epsilon`` > 0 the next action is ε-greedy instead of greedy:
    max_a' Q becomes (1 − ε) max_a' Q + ε mean_a' Q (the target SARSA follows with a fixed ε).
    """
    next_value = (1 - epsilon) * q.max(1) + epsilon * q.mean(1)
    return mdp.R + mdp.gamma * mdp.P @ next_value


def value_iteration(
    mdp: TabularMDP, *, epsilon: float = 0.0, tol: float = 1e-10, max_iter: int = 100_000
):
    """Apply :func:`bellman_backup` from Q = 0 until no entry moves by ``tol``: Q* = T Q*.

    With ``epsilon`` > 0 the fixed point is the value of the best ε-greedy policy: what SARSA
    learns when it keeps exploring with that ε. Returns (Q [S, A], V [S], iterations), where
    V is the greedy value max_a Q.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    q = np.zeros_like(mdp.R)
    for iteration in range(1, max_iter + 1):
        q_new = bellman_backup(mdp, q, epsilon)
        if np.abs(q_new - q).max() < tol:
            return q_new, q_new.max(1), iteration
        q = q_new
    raise RuntimeError(f"value iteration did not converge to {tol} in {max_iter} iterations")


def genre_mdp(
    world: World,
    config: SimulatorConfig | None = None,
    *,
    genres: tuple[str, ...] = ("Documentary", "Fantasy", "War"),
    genre_names: tuple[str, ...] | None = None,
    budget_levels: int = 3,
    top_fraction: float = 0.1,
    gamma: float = 0.9,
) -> TabularMDP:
    """Build the genre MDP; ``genre_names`` lists the world's genre columns (default: MovieLens).

    The default genres give well-separated action values (the smallest gap between the best
    and second-best action is about 0.12 in the course's world), so a learned Q can be checked
    against the optimal policy exactly.
    """
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
        # "a good item of the genre": the genre's most appealing top_fraction for the average user
        cutoff = base[members].quantile(1 - top_fraction)
        members &= base >= cutoff
        # a repeat: right after a click on the genre its satiation is 1, so an item with
        # |g_i| genres, one of them this one, loses s / |g_i| logits (simulator.logits)
        penalty = config.satiation_weight / world.genres[members].sum(1).clamp(min=1)
        p_fresh.append(click_probability(base[members]))
        p_repeat.append(click_probability(base[members] - penalty))
    bait = base[world.clickbait]
    p_bait = click_probability(
        bait[bait >= bait.quantile(1 - top_fraction)] + config.clickbait_appeal
    )

    G, B = len(genres), budget_levels
    states = [(b, g) for b in range(B + 1) for g in range(G + 1)]
    index = {s: i for i, s in enumerate(states)}
    S, A = len(states), G + 1
    P, R_next = np.zeros((S, A, S)), np.zeros((S, A, S))
    terminal = np.array([b == 0 for b, _ in states])
    for (b, g), s in index.items():
        if b == 0:
            P[s, :, s] = 1.0  # absorbing, no reward
            continue
        for a in range(A):
            if a < G:  # a click moves to (b + 1, a), a miss to (b - 1, g): the state tells
                p = p_repeat[a] if a == g else p_fresh[a]
                hit, miss = index[(min(b + 1, B), a)], index[(b - 1, g)]
                P[s, a, hit], P[s, a, miss] = p, 1 - p
                R_next[s, a, hit] = 1.0
            else:  # clickbait: click or miss, the budget drains and the last genre stays
                P[s, a, index[(b - 1, g)]] = 1.0
                R_next[s, a, index[(b - 1, g)]] = p_bait
    return TabularMDP(
        P=P,
        R_next=R_next,
        gamma=gamma,
        terminal=terminal,
        state_names=[f"b={b},last={'none' if g == G else genres[g]}" for b, g in states],
        action_names=[*genres, "clickbait"],
    )


class TabularMDPEnv(gym.Env):
    """A :class:`TabularMDP` as a Gymnasium env with ``Discrete`` observations and actions.

    Episodes start in ``start_state`` (default: full budget, no genre yet), or in a uniformly
    drawn non-terminal state with ``exploring_starts=True``, and end in a terminal state.
    """

    metadata = {"render_modes": []}

    def __init__(
        self, mdp: TabularMDP, *, start_state: int | None = None, exploring_starts: bool = False
    ):
        self.mdp = mdp
        self.observation_space = spaces.Discrete(mdp.n_states)
        self.action_space = spaces.Discrete(mdp.n_actions)
        self.start_state = mdp.n_states - 1 if start_state is None else start_state
        self.exploring_starts = exploring_starts
        self._cdf = np.cumsum(mdp.P, axis=-1)
        self._live = np.flatnonzero(~mdp.terminal)
        self.state = self.start_state

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.exploring_starts:
            self.state = int(self._live[self.np_random.integers(len(self._live))])
        else:
            self.state = self.start_state
        return self.state, {}

    def step(self, action):
        valid = isinstance(action, int | np.integer) and 0 <= action < self.mdp.n_actions
        if not valid:
            raise ValueError(
                f"action must be an int in 0..{self.mdp.n_actions - 1}, got {action!r}"
            )
        s = self.state
        u = self.np_random.random()
        next_state = int(np.searchsorted(self._cdf[s, action], u, side="right"))
        next_state = min(next_state, self.mdp.n_states - 1)
        # The transition's expected reward: the click itself where the next state reveals it
        # (genre actions), the click probability where it does not (clickbait).
        reward = float(self.mdp.R_next[s, action, next_state])
        self.state = next_state
        return next_state, reward, bool(self.mdp.terminal[next_state]), False, {}
