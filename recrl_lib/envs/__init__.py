"""Environments: the batched user simulator, its Gymnasium wrappers, the tabular genre MDP."""

from recrl_lib.envs.genre_mdp import TabularMDP, TabularMDPEnv, genre_mdp, value_iteration
from recrl_lib.envs.gym_env import RecommenderEnv, RecommenderVectorEnv
from recrl_lib.envs.simulator import (
    SimulatorConfig,
    UserSimulator,
    observation_from_history,
    session_observation,
    shown_items,
)
from recrl_lib.envs.vector import TorchVectorEnv
from recrl_lib.envs.world import World, build_world, kmeans

__all__ = [
    "RecommenderEnv",
    "RecommenderVectorEnv",
    "SimulatorConfig",
    "TabularMDP",
    "TabularMDPEnv",
    "TorchVectorEnv",
    "UserSimulator",
    "World",
    "build_world",
    "genre_mdp",
    "kmeans",
    "observation_from_history",
    "session_observation",
    "shown_items",
    "value_iteration",
]
