"""The course's two trained recommenders, one call each, so that every lesson that trains them
again trains exactly what lessons 04 and 05 chose (and lesson 09's candidate retriever,
:func:`click_through_retriever`, built once for the lesson and its tuning script):

- :func:`train_dqn_recommender`: lesson 04's DQN — ``DQNConfig``'s defaults, ε from 1 to 0.05
  over the first fifth of the budget, 32 simulated users at a time;
- :func:`train_ppo_recommender`: lesson 05's PPO — ``PPO_SETTINGS`` on top of ``PPOConfig``'s
  defaults, 64 simulated users at a time.

Both seed everything with the training seed *before* building the network (so the seed decides
its initial weights too), train in a simulator that draws its users from ``user_pool`` (the
tuning half of the users in the lessons; a required argument, so that training on every user,
``None``, is a choice someone wrote down) and return the agent with its training history.

**The cache** (``agents.cache``). A trained agent is kept on disk, keyed by what decides it:
the network's structure, initial weights and buffers (so the item and user vectors it reads),
the agent's config and the loss functions it trains with, the world, the simulator's config —
all of it, even ``observe_user``, which an anonymous network ignores: a lesson that wants
another lesson's agents trains in the same simulator —, the seed, the budget, the user pool and
the device (and the library's source, torch's version, the thread count). A later call with the
same key — lesson 07 after lessons 04 and 05 — loads the agent instead of training it: the same
weights, the same history (``history.attrs["from_cache"]`` says which happened) and the global
random generators as training left them. A cached agent acts exactly as the trained one but
cannot resume training (its replay buffer and optimiser are not kept). ``cache=False`` always
trains.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import torch

from recrl_lib.agents import cache as agent_cache
from recrl_lib.agents.baselines import (
    Policy,
    click_through_recommender,
    interleave,
    mf_recommender,
    random_policy,
)
from recrl_lib.agents.behaviour import softmax_policy
from recrl_lib.agents.dqn import DQN, DQNConfig, RecQNetwork
from recrl_lib.agents.ppo import PPO, PPOConfig, RecActorCritic
from recrl_lib.agents.rollout import log_sessions
from recrl_lib.agents.schedules import EpsilonSchedule
from recrl_lib.device import seed_everything
from recrl_lib.encoders.mf import MatrixFactorization
from recrl_lib.envs.simulator import SimulatorConfig, UserSimulator
from recrl_lib.envs.vector import TorchVectorEnv
from recrl_lib.envs.world import World

# Lesson 05's choice (tried on seeds 0-2): a constant lr 1e-3, 2 epochs of 2 minibatches.
PPO_SETTINGS = dict(lr=1e-3, anneal_lr=False, update_epochs=2, n_minibatches=2)


def recommender_env(
    world: World,
    config: SimulatorConfig,
    *,
    seed: int,
    batch_size: int,
    user_pool: torch.Tensor | None = None,
    device=None,
) -> TorchVectorEnv:
    """``batch_size`` simulated users at a time, drawn from ``user_pool`` (default: all)."""
    users = UserSimulator(
        world, config, batch_size=batch_size, seed=seed, device=device, user_pool=user_pool
    )
    return TorchVectorEnv(users)


def train_dqn_recommender(
    make_network: Callable[[], RecQNetwork],
    world: World,
    config: SimulatorConfig,
    *,
    seed: int,
    steps: int,
    gamma: float = 0.9,
    user_pool: torch.Tensor | None,
    allowed: torch.Tensor | None = None,
    progress: bool = True,
    device=None,
    cache: bool = True,
) -> tuple[DQN, pd.DataFrame]:
    """Lesson 04's DQN trained for ``steps`` transitions (or loaded from the cache, see the
    module docstring). ``make_network()`` builds the Q-network after seeding; ``allowed`` ([N]
    bool) restricts what it may recommend (cold-start items held out). Returns (agent, history
    with a row every tenth of the budget)."""
    seed_everything(seed)
    network = make_network()
    network.restrict_to(allowed)
    epsilon = EpsilonSchedule(1.0, 0.05, steps // 5)
    agent = DQN(network, DQNConfig(gamma=gamma, epsilon=epsilon, seed=seed), device=device)
    losses = [agent_cache.function_id(f) for f in (agent.td_target, agent.loss)]
    key = [agent_cache.network_structure(network), network.state_dict(), agent.config, losses]
    key += [world, config, seed, steps, user_pool, agent.device.type]
    path = agent_cache.entry_file("dqn", key)
    cached = agent_cache.load(path) if cache else None
    if cached is not None:
        state, history = cached
        agent.q.load_state_dict(state)
        agent.target.load_state_dict(state)
        history.attrs["from_cache"] = True
        return agent, history
    env = recommender_env(
        world, config, seed=seed, batch_size=32, user_pool=user_pool, device=agent.device
    )
    history = agent.train(env, steps, log_every=max(steps // 10, 1), progress=progress)
    if cache:
        agent_cache.save(path, agent.q.state_dict(), history)
    history.attrs["from_cache"] = False
    return agent, history


def train_ppo_recommender(
    make_network: Callable[[], RecActorCritic],
    world: World,
    config: SimulatorConfig,
    *,
    seed: int,
    steps: int,
    gamma: float = 0.9,
    user_pool: torch.Tensor | None,
    on_rollout: Callable | None = None,
    progress: bool = True,
    device=None,
    cache: bool = True,
) -> tuple[PPO, pd.DataFrame]:
    """Lesson 05's PPO trained for ``steps`` transitions (or loaded from the cache, see the
    module docstring). ``make_network()`` builds the actor-critic after seeding; ``on_rollout``
    is ``PPO.train``'s diagnostic hook (it only reads: an agent cached without it serves a call
    without it). Returns (agent, history with a row every tenth of the budget)."""
    seed_everything(seed)
    settings = PPOConfig(gamma=gamma, seed=seed, **PPO_SETTINGS)
    agent = PPO(make_network(), settings, device=device)
    losses = [agent_cache.function_id(f) for f in (agent.gae, agent.loss)]
    key = [agent_cache.network_structure(agent.net), agent.net.state_dict(), agent.config, losses]
    key += [world, config, seed, steps, user_pool, agent.device.type]
    path = agent_cache.entry_file("ppo", key)
    hook = None if on_rollout is None else agent_cache.function_id(on_rollout)
    cache = cache and (on_rollout is None or hook is not None)  # no stable name: no caching
    cached = agent_cache.load(path, hook) if cache else None
    if cached is not None:
        state, history = cached
        agent.net.load_state_dict(state)
        history.attrs["from_cache"] = True
        return agent, history
    env = recommender_env(
        world, config, seed=seed, batch_size=64, user_pool=user_pool, device=agent.device
    )
    history = agent.train(
        env, steps, log_every=max(steps // 10, 1), on_rollout=on_rollout, progress=progress
    )
    if cache:
        agent_cache.save(path, agent.net.state_dict(), history, hook)
    history.attrs["from_cache"] = False
    return agent, history


def click_through_retriever(
    world: World,
    config: SimulatorConfig,
    mf: MatrixFactorization,
    *,
    user_pool: torch.Tensor,
    n_sessions: int,
    seed: int = 3,
    device=None,
) -> tuple[Policy, Policy, int]:
    """Lesson 09's candidate retriever: the recommender's MF (its own factorisation of the
    training split, for the logged-in user) interleaved round-robin with a click-through
    retriever, each movie's shrunk click rate in a log of ``n_sessions`` sessions of uniformly
    random recommendations to ``user_pool`` (the recommender's own exploration log; tuned for
    clicks, it loves clickbait). Returns (the blend, the click-through retriever alone, the
    number of logged recommendations)."""
    logger = UserSimulator(
        world, config, batch_size=n_sessions, seed=seed, device=device, user_pool=user_pool
    )
    # a huge temperature: every valid item alike
    uniform = softmax_policy(random_policy(world.n_items, seed=seed), temperature=1e6)
    log = log_sessions(logger, uniform, seed=seed)
    alive = log["alive"]
    click_through = click_through_recommender(
        log["actions"][alive], log["rewards"][alive], world.n_items
    )
    blend = interleave([mf_recommender(mf), click_through], name="retriever (MF + click-through)")
    return blend, click_through, int(alive.sum())
