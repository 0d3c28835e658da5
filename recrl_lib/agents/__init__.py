"""Agents: one protocol for every policy, baselines and oracles, tabular Q-learning, DQN, PPO
(and the course's trained recommenders, ``recipes``), meta-RL (``recrl_lib.agents.meta``),
contextual linear bandits (``bandits``) and the recommenders a feedback loop retrains
(``loop_recommenders``)."""

from recrl_lib.agents.bandits import (
    EpsilonGreedyLinear,
    LinearBandit,
    LinearThompson,
    LinUCB,
    explore_scores,
    linear_bandit_problem,
    linucb_scores,
    linucb_update,
    reduce_features,
    regret_curve,
)
from recrl_lib.agents.baselines import (
    Policy,
    click_through_recommender,
    greedy_oracle,
    interleave,
    mf_recommender,
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
from recrl_lib.agents.loop_recommenders import (
    BanditRecommender,
    LoopLog,
    LoopRecommender,
    MFLoopRecommender,
    OracleRecommender,
    PopularityRecommender,
    RandomRecommender,
    StaticRecommender,
)
from recrl_lib.agents.ppo import PPO, MLPActorCritic, PPOConfig, RecActorCritic
from recrl_lib.agents.recipes import (
    click_through_retriever,
    recommender_env,
    train_dqn_recommender,
    train_ppo_recommender,
)
from recrl_lib.agents.rollout import (
    draw_users,
    evaluate_policy,
    log_sessions,
    split_users,
    tune_population_planner,
    tune_rule,
)
from recrl_lib.agents.schedules import EpsilonSchedule
from recrl_lib.agents.tabular import q_learning, sarsa, td_control

__all__ = [
    "BanditRecommender",
    "EpsilonGreedyLinear",
    "LinUCB",
    "LinearBandit",
    "LinearThompson",
    "LoopLog",
    "LoopRecommender",
    "MFLoopRecommender",
    "OracleRecommender",
    "PopularityRecommender",
    "RandomRecommender",
    "StaticRecommender",
    "explore_scores",
    "linear_bandit_problem",
    "linucb_scores",
    "linucb_update",
    "reduce_features",
    "regret_curve",
    "recommender_env",
    "train_dqn_recommender",
    "train_ppo_recommender",
    "DQN",
    "DQNConfig",
    "EpsilonSchedule",
    "MLPActorCritic",
    "MLPQNetwork",
    "PPO",
    "PPOConfig",
    "Policy",
    "click_through_recommender",
    "click_through_retriever",
    "interleave",
    "RecActorCritic",
    "RecQNetwork",
    "StochasticPolicy",
    "draw_users",
    "epsilon_greedy",
    "evaluate_policy",
    "greedy_oracle",
    "log_sessions",
    "mf_recommender",
    "mixture",
    "most_popular",
    "oracle_planner",
    "population_planner",
    "q_learning",
    "random_policy",
    "sarsa",
    "softmax_policy",
    "split_users",
    "td_control",
    "tune_population_planner",
    "tune_rule",
]
