"""Gymnasium wrappers around the batched simulator.

- :class:`RecommenderEnv`: one user, the standard ``gymnasium.Env`` API (passes ``check_env``).
- :class:`RecommenderVectorEnv`: ``num_envs`` users stepped in one call, with same-step
  auto-reset: when a session ends, ``infos["final_obs"]`` holds its last observation (rows
  flagged by ``infos["_final_obs"]``) and the returned observation is the next session's first.
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
    H = config.history_len
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
    return spaces.Dict(space)


def action_space(world: World, config: SimulatorConfig) -> spaces.Space:
    k = config.slate_size
    return spaces.Discrete(world.n_items) if k == 1 else spaces.MultiDiscrete([world.n_items] * k)


def to_numpy(obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    out = {k: v.cpu().numpy() for k, v in obs.items()}
    out["mask"] = out["mask"].astype(np.int8)
    out["clicks"], out["ratings"] = out["clicks"].astype(np.float32), out["ratings"].astype(np.float32)  # fmt: skip
    out["step"] = np.minimum(out["step"], 1.0).astype(np.float32)
    return out


class RecommenderEnv(gym.Env):
    """One simulated user per episode. ``reset(options={"user": id})`` picks a real user."""

    metadata = {"render_modes": []}

    def __init__(self, world: World, config: SimulatorConfig | None = None, *, device="cpu"):
        self.config = config or SimulatorConfig()
        self.sim = UserSimulator(world, self.config, batch_size=1, device=device)
        self.observation_space = observation_space(world, self.config)
        self.action_space = action_space(world, self.config)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        users = None
        if options and "user" in options:
            users = torch.tensor([int(options["user"])])
        obs = self.sim.reset(users=users, seed=seed)
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
        seed: int = 0,
    ):
        self.config = config or SimulatorConfig()
        self.num_envs = num_envs
        self.sim = UserSimulator(world, self.config, batch_size=num_envs, device=device, seed=seed)  # fmt: skip
        self.single_observation_space = observation_space(world, self.config)
        self.single_action_space = action_space(world, self.config)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return to_numpy(self.sim.reset(seed=seed)), {}

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.sim.step(torch.as_tensor(np.asarray(actions)))  # fmt: skip
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
