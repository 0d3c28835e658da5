"""Tabular Q-learning and SARSA for small discrete Gymnasium envs.

Both learn Q(s, a) from sampled transitions (s, a, r, s') with a step size α:

    Q-learning (off-policy):  Q(s,a) ← Q(s,a) + α [r + γ max_a' Q(s',a') − Q(s,a)]
    SARSA      (on-policy):   Q(s,a) ← Q(s,a) + α [r + γ Q(s',a')       − Q(s,a)]

where a' is the action the ε-greedy behaviour policy takes next. At a terminal s' the
bootstrap term is 0; at a truncation (time limit) it is kept, since the state had a future.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from recrl_lib.agents.schedules import EpsilonSchedule


def _check_discrete(env: gym.Env) -> tuple[int, int]:
    if not isinstance(env.observation_space, gym.spaces.Discrete) or not isinstance(
        env.action_space, gym.spaces.Discrete
    ):
        raise TypeError(
            "tabular methods need Discrete observation and action spaces, got "
            f"{env.observation_space} and {env.action_space}"
        )
    return int(env.observation_space.n), int(env.action_space.n)


def q_learning_update(q, state, action, reward, next_state, terminated, *, alpha, gamma) -> float:
    """Q(s,a) += α [r + γ max_a' Q(s',a') − Q(s,a)] on the table q [S, A], in place.

    No bootstrap term after a terminated step. Returns the TD error (the bracket).
    """
    bootstrap = 0.0 if terminated else gamma * q[next_state].max()
    td_error = reward + bootstrap - q[state, action]
    q[state, action] += alpha * td_error
    return float(td_error)


def sarsa_update(
    q, state, action, reward, next_state, next_action, terminated, *, alpha, gamma
) -> float:
    """Q(s,a) += α [r + γ Q(s',a') − Q(s,a)], a' the action actually taken next; in place.

    No bootstrap term after a terminated step. Returns the TD error (the bracket).
    """
    bootstrap = 0.0 if terminated else gamma * q[next_state, next_action]
    td_error = reward + bootstrap - q[state, action]
    q[state, action] += alpha * td_error
    return float(td_error)


def td_control(
    env: gym.Env,
    n_steps: int,
    *,
    on_policy: bool,
    gamma: float,
    epsilon: EpsilonSchedule | None = None,
    step_size_power: float = 0.8,
    seed: int = 0,
    q_star: np.ndarray | None = None,
    log_every: int = 1000,
    progress: bool = True,
) -> tuple[np.ndarray, pd.DataFrame]:
    """TD control for ``n_steps`` env steps: SARSA if ``on_policy`` else Q-learning.

    Returns (Q [S, A], history). The history logs ε, episodes, the mean return of the last
    100 episodes and, when ``q_star`` is given, the max |Q − Q*| every ``log_every`` steps.
    """
    epsilon = epsilon or EpsilonSchedule()
    n_states, n_actions = _check_discrete(env)
    rng = np.random.default_rng(seed)
    q = np.zeros((n_states, n_actions))
    visits = np.zeros((n_states, n_actions))

    def behave(state: int, step: int) -> int:  # ε-greedy, ties broken at random
        if rng.random() < epsilon(step):
            return int(rng.integers(n_actions))
        row = q[state]
        best = np.flatnonzero(row == row.max())
        return int(best[0]) if len(best) == 1 else int(rng.choice(best))

    history, episode_return, returns = [], 0.0, []
    state, _ = env.reset(seed=seed)
    action = behave(state, 0)
    steps = tqdm(range(1, n_steps + 1), desc="TD control", disable=not progress, mininterval=1)
    for step in steps:
        next_state, reward, terminated, truncated, _ = env.step(action)
        next_action = behave(next_state, step)
        # Step size α = 1 / N(s, a)^power: Robbins-Monro conditions hold for power in (0.5, 1].
        visits[state, action] += 1
        alpha = 1.0 / visits[state, action] ** step_size_power
        if on_policy:
            args = (state, action, reward, next_state, next_action, terminated)
            sarsa_update(q, *args, alpha=alpha, gamma=gamma)
        else:
            args = (state, action, reward, next_state, terminated)
            q_learning_update(q, *args, alpha=alpha, gamma=gamma)
        episode_return += reward
        if terminated or truncated:
            returns.append(episode_return)
            episode_return = 0.0
            next_state, _ = env.reset()
            next_action = behave(next_state, step)
        state, action = next_state, next_action
        if step % log_every == 0 or step == n_steps:
            row = {"step": step, "epsilon": epsilon(step), "episodes": len(returns)}
            row["mean_return"] = float(np.mean(returns[-100:])) if returns else np.nan
            if q_star is not None:
                row["max_abs_error"] = float(np.abs(q - q_star).max())
            history.append(row)
    return q, pd.DataFrame(history)


def q_learning(env: gym.Env, n_steps: int, **options) -> tuple[np.ndarray, pd.DataFrame]:
    """Q-learning (off-policy): :func:`td_control` with ``on_policy=False``."""
    return td_control(env, n_steps, on_policy=False, **options)


def sarsa(env: gym.Env, n_steps: int, **options) -> tuple[np.ndarray, pd.DataFrame]:
    """SARSA (on-policy): :func:`td_control` with ``on_policy=True``."""
    return td_control(env, n_steps, on_policy=True, **options)


def policy_value(P: np.ndarray, R: np.ndarray, gamma: float, policy: np.ndarray) -> np.ndarray:
    """Exact V^π [S] of a deterministic policy [S] by solving (I − γ P_π) V = R_π."""
    states = np.arange(P.shape[0])
    P_pi, R_pi = P[states, policy], R[states, policy]
    return np.linalg.solve(np.eye(len(states)) - gamma * P_pi, R_pi)
