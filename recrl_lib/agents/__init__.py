"""Agents: baselines, tabular Q-learning, DQN, PPO, meta-RL (one file each)."""

from recrl_lib.agents.baselines import (
    greedy_oracle,
    most_popular,
    oracle_planner,
    population_planner,
    random_policy,
)
from recrl_lib.agents.dqn import DQN, DQNConfig, MLPQNetwork, RecQNetwork
from recrl_lib.agents.rollout import evaluate_policy
from recrl_lib.agents.tabular import EpsilonSchedule, q_learning, sarsa, td_control

__all__ = [
    "DQN",
    "DQNConfig",
    "EpsilonSchedule",
    "MLPQNetwork",
    "RecQNetwork",
    "evaluate_policy",
    "greedy_oracle",
    "most_popular",
    "oracle_planner",
    "population_planner",
    "q_learning",
    "random_policy",
    "sarsa",
    "td_control",
]
