"""Agents: one protocol for every policy, baselines and oracles, tabular Q-learning, DQN, PPO,
meta-RL (``recrl_lib.agents.meta``)."""

from recrl_lib.agents.baselines import (
    Policy,
    greedy_oracle,
    most_popular,
    oracle_planner,
    population_planner,
    random_policy,
)
from recrl_lib.agents.behaviour import (
    StochasticPolicy,
    epsilon_greedy,
    mixture,
    softmax_policy,
)
from recrl_lib.agents.dqn import DQN, DQNConfig, MLPQNetwork, RecQNetwork
from recrl_lib.agents.ppo import PPO, MLPActorCritic, PPOConfig, RecActorCritic
from recrl_lib.agents.rollout import evaluate_policy, log_sessions
from recrl_lib.agents.schedules import EpsilonSchedule
from recrl_lib.agents.tabular import q_learning, sarsa, td_control

__all__ = [
    "DQN",
    "DQNConfig",
    "EpsilonSchedule",
    "MLPActorCritic",
    "MLPQNetwork",
    "PPO",
    "PPOConfig",
    "Policy",
    "RecActorCritic",
    "RecQNetwork",
    "StochasticPolicy",
    "epsilon_greedy",
    "evaluate_policy",
    "greedy_oracle",
    "log_sessions",
    "mixture",
    "most_popular",
    "oracle_planner",
    "population_planner",
    "q_learning",
    "random_policy",
    "sarsa",
    "softmax_policy",
    "td_control",
]
