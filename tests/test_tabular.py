"""Tabular Q-learning and SARSA against a Q* computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recrl_lib.agents import EpsilonSchedule
from recrl_lib.agents.tabular import (
    policy_value,
    q_learning,
    q_learning_update,
    sarsa,
    sarsa_update,
)
from recrl_lib.envs import TabularMDP, TabularMDPEnv, value_iteration
from recrl_lib.envs.genre_mdp import bellman_backup


def hand_made_mdp(gamma: float = 0.9) -> TabularMDP:
    """State 0: 'take' pays 1 and ends; 'wait' moves to state 1. State 1: 'take' pays 2 and
    ends; 'wait' goes back to 0. State 2 is terminal. By hand, with γ = 0.9:
    Q*(1, take) = 2, Q*(0, wait) = 0.9·2 = 1.8, Q*(0, take) = 1, Q*(1, wait) = 0.9·1.8 = 1.62."""
    P, R_next = np.zeros((3, 2, 3)), np.zeros((3, 2, 3))
    P[0, 0, 2], R_next[0, 0, 2] = 1.0, 1.0
    P[0, 1, 1] = 1.0
    P[1, 0, 2], R_next[1, 0, 2] = 1.0, 2.0
    P[1, 1, 0] = 1.0
    P[2, :, 2] = 1.0
    return TabularMDP(
        P=P,
        R_next=R_next,
        gamma=gamma,
        terminal=np.array([False, False, True]),
        state_names=["s0", "s1", "end"],
        action_names=["take", "wait"],
    )


Q_STAR_BY_HAND = np.array([[1.0, 1.8], [2.0, 1.62], [0.0, 0.0]])


def test_value_iteration_matches_the_hand_computation():
    q, v, _ = value_iteration(hand_made_mdp())
    np.testing.assert_allclose(q, Q_STAR_BY_HAND, atol=1e-8)
    np.testing.assert_allclose(
        policy_value(hand_made_mdp().P, hand_made_mdp().R, 0.9, q.argmax(1)), v
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_q_learning_reaches_q_star(seed):
    env = TabularMDPEnv(hand_made_mdp(), start_state=0, exploring_starts=True)
    q, history = q_learning(
        env, 5_000, gamma=0.9, seed=seed, q_star=Q_STAR_BY_HAND, log_every=50, progress=False
    )
    assert np.abs(q - Q_STAR_BY_HAND).max() < 0.02
    assert history["max_abs_error"].iloc[-1] == pytest.approx(np.abs(q - Q_STAR_BY_HAND).max())


def test_the_updates_by_hand():
    q = np.array([[1.0, 2.0], [3.0, 5.0], [0.0, 0.0]])
    # Q-learning: target 1 + 0.9 · max(3, 5) = 5.5; Q(0, 1) = 2 + 0.5 · (5.5 − 2) = 3.75
    assert q_learning_update(q, 0, 1, 1.0, 1, False, alpha=0.5, gamma=0.9) == pytest.approx(3.5)
    assert q[0, 1] == pytest.approx(3.75)
    # SARSA bootstraps on the action taken next (0): target 1 + 0.9 · 3 = 3.7
    q[0, 1] = 2.0
    sarsa_update(q, 0, 1, 1.0, 1, 0, False, alpha=0.5, gamma=0.9)
    assert q[0, 1] == pytest.approx(2.0 + 0.5 * (3.7 - 2.0))
    # after a terminated step there is nothing to bootstrap
    q[0, 1] = 2.0
    q_learning_update(q, 0, 1, 1.0, 1, True, alpha=1.0, gamma=0.9)
    assert q[0, 1] == 1.0
    mdp = hand_made_mdp()
    np.testing.assert_allclose(bellman_backup(mdp, Q_STAR_BY_HAND), Q_STAR_BY_HAND, atol=1e-12)
    np.testing.assert_allclose(bellman_backup(mdp, np.zeros((3, 2))), mdp.R)


def cliff_mdp(gamma: float = 0.9) -> TabularMDP:
    """A cliff edge. From the start (0), 'edge' leads to the edge (1) and 'safe' to a safe
    path (2). At the edge 'go' pays 10 and 'slip' falls: −20. On the safe path both actions
    pay 8. State 3 is terminal. The optimal path runs along the edge: Q*(0, edge) = 0.9 · 10 = 9
    > Q*(0, safe) = 7.2. An ε-greedy walker with ε = 0.2 slips at the edge 10% of the time,
    so its own values favour the safe path: Q^ε(0, edge) = 0.9 (0.9 · 10 − 0.1 · 20) = 6.3."""
    P, R_next = np.zeros((4, 2, 4)), np.zeros((4, 2, 4))
    P[0, 0, 1] = P[0, 1, 2] = 1.0
    P[1, :, 3] = 1.0
    R_next[1, 0, 3], R_next[1, 1, 3] = 10.0, -20.0
    P[2, :, 3], R_next[2, :, 3] = 1.0, 8.0
    P[3, :, 3] = 1.0
    names = {"state_names": ["start", "edge", "safe", "end"], "action_names": ["a0", "a1"]}
    terminal = np.array([False, False, False, True])
    return TabularMDP(P=P, R_next=R_next, gamma=gamma, terminal=terminal, **names)


def test_sarsa_learns_the_safe_path_where_q_learning_learns_the_edge():
    mdp = cliff_mdp()
    fixed = EpsilonSchedule(0.2, 0.2, 1)  # the on- and off-policy answers differ under ε > 0
    # α = 1/N: each estimate is the plain mean of its targets
    options = dict(gamma=0.9, epsilon=fixed, step_size_power=1.0, seed=0, progress=False)
    q_off, _ = q_learning(TabularMDPEnv(mdp, start_state=0), 100_000, **options)
    q_on, _ = sarsa(TabularMDPEnv(mdp, start_state=0), 100_000, **options)
    q_star, _, _ = value_iteration(mdp)
    np.testing.assert_allclose(q_star[0], [9.0, 7.2])
    np.testing.assert_allclose(q_off[:3], q_star[:3], atol=0.3)
    assert q_off[0].argmax() == 0  # along the edge
    # SARSA's fixed point is the ε-greedy policy's own value: edge 0.9 · 7, safe 0.9 · 8 —
    # which value iteration with ε-greedy next actions computes exactly
    q_eps, _, _ = value_iteration(mdp, epsilon=0.2)
    np.testing.assert_allclose(q_eps[0], [6.3, 7.2])
    np.testing.assert_allclose(q_on[:3], q_eps[:3], atol=0.3)
    assert q_on[0].argmax() == 1  # the safe path


def test_sarsa_with_decaying_epsilon_finds_the_optimal_policy():
    env = TabularMDPEnv(hand_made_mdp(), start_state=0, exploring_starts=True)
    schedule = EpsilonSchedule(1.0, 0.01, 4_000)
    q, _ = sarsa(env, 8_000, gamma=0.9, epsilon=schedule, seed=0, progress=False)
    assert q[:2].argmax(1).tolist() == [1, 0]  # wait in s0, take in s1
    # the greedy actions' values; the others are rarely tried once ε is small
    assert abs(q[0, 1] - 1.8) < 0.05 and abs(q[1, 0] - 2.0) < 0.05


def test_epsilon_schedule_and_input_checks():
    schedule = EpsilonSchedule(1.0, 0.1, 10)
    assert schedule(0) == 1.0 and schedule(5) == pytest.approx(0.55)
    assert schedule(100) == pytest.approx(0.1)
    env = TabularMDPEnv(hand_made_mdp())
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be an int"):
        env.step(5)


def test_tabular_needs_discrete_spaces():
    import gymnasium as gym

    class Continuous(gym.Env):
        observation_space = gym.spaces.Box(0, 1, (2,))
        action_space = gym.spaces.Discrete(2)

    with pytest.raises(TypeError, match="Discrete observation and action spaces"):
        q_learning(Continuous(), 10, gamma=0.9, progress=False)
