"""Agents: baselines, tabular Q-learning, DQN, PPO, meta-RL (one file each)."""

from recrl_lib.agents.baselines import (
    greedy_oracle,
    most_popular,
    oracle_planner,
    population_planner,
    random_policy,
)
from recrl_lib.agents.rollout import evaluate_policy

__all__ = [
    "evaluate_policy",
    "greedy_oracle",
    "most_popular",
    "oracle_planner",
    "population_planner",
    "random_policy",
]
