"""Tabular Q-learning and SARSA against a Q* computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recrl_lib.agents.tabular import EpsilonSchedule, policy_value, q_learning, sarsa
from recrl_lib.envs import TabularMDP, TabularMDPEnv, value_iteration


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
    return TabularMDP(P=P, R_next=R_next, gamma=gamma, terminal=np.array([False, False, True]),
                      state_names=["s0", "s1", "end"], action_names=["take", "wait"])  # fmt: skip


Q_STAR_BY_HAND = np.array([[1.0, 1.8], [2.0, 1.62], [0.0, 0.0]])


def test_value_iteration_matches_the_hand_computation():
    q, v, _ = value_iteration(hand_made_mdp())
    np.testing.assert_allclose(q, Q_STAR_BY_HAND, atol=1e-8)
    np.testing.assert_allclose(policy_value(hand_made_mdp().P, hand_made_mdp().R, 0.9, q.argmax(1)), v)  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_q_learning_reaches_q_star(seed):
    env = TabularMDPEnv(hand_made_mdp(), start_state=0, exploring_starts=True)
    q, history = q_learning(
        env, 5_000, gamma=0.9, seed=seed, q_star=Q_STAR_BY_HAND, log_every=50, progress=False
    )
    assert np.abs(q - Q_STAR_BY_HAND).max() < 0.02
    assert history["max_abs_error"].iloc[-1] == pytest.approx(np.abs(q - Q_STAR_BY_HAND).max())


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
