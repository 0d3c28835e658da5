"""The course's two trained recommenders, one call each, so that every lesson that trains them
again trains exactly what lessons 04 and 05 chose:

- :func:`train_dqn_recommender`: lesson 04's DQN — ``DQNConfig``'s defaults, ε from 1 to 0.05
  over the first fifth of the budget, 32 simulated users at a time;
- :func:`train_ppo_recommender`: lesson 05's PPO — ``PPO_SETTINGS`` on top of ``PPOConfig``'s
  defaults, 64 simulated users at a time.

Both seed everything with the training seed *before* building the network (so the seed decides
its initial weights too), train in a simulator that draws its users from ``user_pool`` (the
tuning half of the users in the lessons; a required argument, so that training on every user,
``None``, is a choice someone wrote down) and return the agent with its training history.

**The cache.** A trained agent is kept on disk (``cache_dir("agents")``), keyed by everything
that decides it: the network's initial weights and buffers (so its architecture and the item
and user vectors it reads), the world, the simulator's config, the seed, the budget, γ, the user
pool, the allowed items, the device, torch's version and the source of ``recrl_lib`` itself. A
later call with the same key — lesson 07 after lessons 04 and 05 — loads the agent instead of
training it again: the same weights, the same history, and the global random generators left
where training would have left them, so what follows runs as it would have. A cached agent
acts exactly as the trained one but cannot resume training (its replay buffer and optimiser
are not kept). ``cache=False`` always trains.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recrl_lib.agents.dqn import DQN, DQNConfig, RecQNetwork
from recrl_lib.agents.ppo import PPO, PPOConfig, RecActorCritic
from recrl_lib.agents.schedules import EpsilonSchedule
from recrl_lib.config import cache_dir, warn_unwritable_cache
from recrl_lib.device import seed_everything
from recrl_lib.envs.simulator import SimulatorConfig, UserSimulator
from recrl_lib.envs.vector import TorchVectorEnv
from recrl_lib.envs.world import World

# Lesson 05's choice (tried on seeds 0-2): a constant lr 1e-3, 2 epochs of 2 minibatches.
PPO_SETTINGS = dict(lr=1e-3, anneal_lr=False, update_epochs=2, n_minibatches=2)


def _digest(value, h) -> None:
    """Feed ``value`` (tensors, dataclasses, mappings, sequences, scalars) into the hash ``h``."""
    if torch.is_tensor(value):
        t = value.detach().cpu().contiguous()
        h.update(f"tensor{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _digest({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, h)
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            h.update(str(key).encode())
            _digest(value[key], h)
    elif isinstance(value, list | tuple):
        h.update(f"seq{len(value)}".encode())
        for item in value:
            _digest(item, h)
    else:
        h.update(repr(value).encode())


@functools.cache
def _library_source() -> str:
    """A digest of every source file of ``recrl_lib``: changed code, another cache entry."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _cache_file(kind: str, parts: list) -> Path:
    h = hashlib.sha256()
    _digest([kind, torch.__version__, _library_source(), parts], h)
    return cache_dir("agents") / f"{kind}-{h.hexdigest()[:24]}.pt"


def _random_states() -> dict:
    numpy_state = np.random.get_state()  # noqa: NPY002 -- the global generator, as seeded
    return {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}


def _set_random_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])  # noqa: NPY002
    random.setstate(states["python"])


def _load_cached(path: Path, hook: str | None) -> dict | None:
    """The cached entry at ``path``, or None when there is none or it lacks ``hook``'s columns."""
    if not path.is_file():
        return None
    entry = torch.load(path, map_location="cpu", weights_only=False)
    if hook is not None and entry["hook"] != hook:
        return None  # trained without this diagnostic hook: its history lacks the columns
    return entry


def _save_cached(path: Path, network: torch.nn.Module, history, hook: str | None) -> None:
    entry = {"net": network.state_dict(), "history": history, "hook": hook}
    entry["random"] = _random_states()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".part{os.getpid()}")  # two lessons may train at once
        torch.save(entry, partial)
        partial.replace(path)
    except OSError as error:
        warn_unwritable_cache(path, error)


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
    key = [network.state_dict(), world, config, seed, steps, gamma, user_pool, agent.device.type]
    path = _cache_file("dqn", key)
    entry = _load_cached(path, None) if cache else None
    if entry is not None:
        agent.q.load_state_dict(entry["net"])
        agent.target.load_state_dict(entry["net"])
        _set_random_states(entry["random"])
        return agent, entry["history"]
    env = recommender_env(
        world, config, seed=seed, batch_size=32, user_pool=user_pool, device=agent.device
    )
    history = agent.train(env, steps, log_every=max(steps // 10, 1), progress=progress)
    if cache:
        _save_cached(path, agent.q, history, None)
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
    key = [agent.net.state_dict(), world, config, seed, steps, gamma, user_pool, agent.device.type]
    path = _cache_file("ppo", key)
    hook = None if on_rollout is None else getattr(on_rollout, "__qualname__", repr(on_rollout))
    entry = _load_cached(path, hook) if cache else None
    if entry is not None:
        agent.net.load_state_dict(entry["net"])
        _set_random_states(entry["random"])
        return agent, entry["history"]
    env = recommender_env(
        world, config, seed=seed, batch_size=64, user_pool=user_pool, device=agent.device
    )
    history = agent.train(
        env, steps, log_every=max(steps // 10, 1), on_rollout=on_rollout, progress=progress
    )
    if cache:
        _save_cached(path, agent.net, history, hook)
    return agent, history
