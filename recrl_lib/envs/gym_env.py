"""Gymnasium wrappers around the batched simulator: the standard API at the boundary.

- :class:`RecommenderEnv`: one user, the standard ``gymnasium.Env`` API (passes ``check_env``).
- :class:`RecommenderVectorEnv`: ``num_envs`` users stepped in one call, with same-step
  auto-reset: when a session ends, ``infos["final_obs"]`` holds its last observation (rows
  flagged by ``infos["_final_obs"]``) and the returned observation is the next session's first.

Both draw their randomness from Gymnasium's ``np_random``: ``reset(seed=s)`` repeats a run, and
copies reset without a seed differ (each gets its own entropy, as Gymnasium's envs do).
The training loops use :class:`recrl_lib.envs.vector.TorchVectorEnv` instead: same semantics,
torch tensors, no NumPy round trip.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from recrl_lib.envs.simulator import SimulatorConfig, UserSimulator
from recrl_lib.envs.world import World


def observation_space(world: World, config: SimulatorConfig) -> spaces.Dict:
    H = config.observed_steps
    space = {
        "items": spaces.Box(0, world.n_items - 1, (H,), np.int64),
        "clicks": spaces.Box(0.0, 1.0, (H,), np.float32),
        "ratings": spaces.Box(0.0, 1.0, (H,), np.float32),
        "mask": spaces.MultiBinary(H),
        "step": spaces.Box(0.0, 1.0, (1,), np.float32),
        "session": spaces.Box(0.0, 1.0, (3,), np.float32),
    }
    if config.observe_features:
        space["features"] = spaces.Box(0.0, 1.0, (world.user_features.shape[1],), np.float32)
    if config.observe_user:
        space["user"] = spaces.Box(-1, world.n_users - 1, (1,), np.int64)
    return spaces.Dict(space)


def action_space(world: World, config: SimulatorConfig) -> spaces.Space:
    k = config.slate_size
    return spaces.Discrete(world.n_items) if k == 1 else spaces.MultiDiscrete([world.n_items] * k)


def to_numpy(obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The simulator's observation in the dtypes of :func:`observation_space`."""
    out = {k: v.cpu().numpy() for k, v in obs.items()}
    out["mask"] = out["mask"].astype(np.int8)
    for key in ("clicks", "ratings", "step", "session"):
        out[key] = out[key].astype(np.float32)
    return out


def _sim_seed(np_random: np.random.Generator) -> int:
    return int(np_random.integers(2**62))


class RecommenderEnv(gym.Env):
    """One simulated user per episode. ``reset(options={"user": id})`` picks a real user."""

    metadata = {"render_modes": []}

    def __init__(
        self, world: World, config: SimulatorConfig | None = None, *, device="cpu", user_pool=None
    ):
        self.config = config or SimulatorConfig()
        self.sim = UserSimulator(
            world, self.config, batch_size=1, device=device, user_pool=user_pool
        )
        self.observation_space = observation_space(world, self.config)
        self.action_space = action_space(world, self.config)
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._seeded:  # the simulator's stream comes from np_random
            self.sim.generator.manual_seed(_sim_seed(self.np_random))
            self._seeded = True
        users = None
        if options and "user" in options:
            users = torch.tensor([int(options["user"])])
        obs = self.sim.reset(users=users)
        return {k: v[0] for k, v in to_numpy(obs).items()}, {}

    def step(self, action):
        actions = torch.as_tensor(np.asarray(action)).reshape(1, -1)
        obs, reward, terminated, truncated, info = self.sim.step(actions)
        info = {k: v[0].item() for k, v in info.items()}
        return (
            {k: v[0] for k, v in to_numpy(obs).items()},
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            info,
        )


class RecommenderVectorEnv(VectorEnv):
    """``num_envs`` users stepped together by one :class:`UserSimulator` call."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        world: World,
        config: SimulatorConfig | None = None,
        *,
        num_envs: int = 8,
        device=None,
        user_pool=None,
    ):
        self.config = config or SimulatorConfig()
        self.num_envs = num_envs
        self.sim = UserSimulator(
            world, self.config, batch_size=num_envs, device=device, user_pool=user_pool
        )
        self.single_observation_space = observation_space(world, self.config)
        self.single_action_space = action_space(world, self.config)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self.sim.generator.manual_seed(_sim_seed(self.np_random))
            self._seeded = True
        return to_numpy(self.sim.reset()), {}

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.sim.step(
            torch.as_tensor(np.asarray(actions))
        )
        done = terminated | truncated
        infos = {k: v.cpu().numpy() for k, v in info.items()}
        if done.any():
            infos["final_obs"], infos["_final_obs"] = to_numpy(obs), done.cpu().numpy()
            obs = self.sim.reset(rows=done)
        return (
            to_numpy(obs),
            reward.cpu().numpy(),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            infos,
        )
