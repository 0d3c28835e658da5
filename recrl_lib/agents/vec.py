"""Torch-native vector environments with same-step auto-reset, for the training loops.

Both adapters return, from ``step(actions)``:
``(obs, next_obs, reward, terminated, truncated)`` where ``next_obs`` is the observation the
step led to (the final one of a finished episode) and ``obs`` is what the agent acts on next
(the first of a new episode where one finished). Observations are dicts of tensors.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from recrl_lib.envs.simulator import UserSimulator


class SimulatorVecEnv:
    """The batched user simulator: every row is one user's session."""

    def __init__(self, sim: UserSimulator):
        self.sim = sim
        self.num_envs, self.device = sim.batch_size, sim.device
        self.n_actions = sim.world.n_items

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        return self.sim.reset(seed=seed)

    def step(self, actions: torch.Tensor):
        next_obs, reward, terminated, truncated, _ = self.sim.step(actions)
        done = terminated | truncated
        obs = self.sim.reset(rows=done) if done.any() else next_obs
        return obs, next_obs, reward, terminated, truncated


class GymVecEnv:
    """Any Gymnasium env with a ``Box`` observation and a ``Discrete`` action space."""

    def __init__(self, env_id_or_factory, num_envs: int = 8, device: torch.device | str = "cpu"):
        factory = (lambda: gym.make(env_id_or_factory)) if isinstance(env_id_or_factory, str) else env_id_or_factory  # fmt: skip
        probe = factory()
        if not isinstance(probe.action_space, gym.spaces.Discrete) or not isinstance(
            probe.observation_space, gym.spaces.Box
        ):
            raise TypeError(
                "GymVecEnv needs a Box observation and a Discrete action space, got "
                f"{probe.observation_space} and {probe.action_space}"
            )
        probe.close()
        self.envs = gym.vector.SyncVectorEnv(
            [factory] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        self.num_envs, self.device = num_envs, torch.device(device)
        self.n_actions = int(self.envs.single_action_space.n)
        self.obs_dim = int(np.prod(self.envs.single_observation_space.shape))

    def _to_torch(self, obs: np.ndarray) -> dict[str, torch.Tensor]:
        return {"obs": torch.as_tensor(obs, dtype=torch.float32, device=self.device).reshape(self.num_envs, -1)}  # fmt: skip

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        return self._to_torch(self.envs.reset(seed=seed)[0])

    def step(self, actions: torch.Tensor):
        obs, reward, terminated, truncated, infos = self.envs.step(actions.cpu().numpy())
        next_obs = obs.copy()
        if "_final_obs" in infos:
            for i in np.flatnonzero(infos["_final_obs"]):
                next_obs[i] = infos["final_obs"][i]
        as_tensor = lambda x, dtype: torch.as_tensor(x, dtype=dtype, device=self.device)  # noqa: E731
        return (
            self._to_torch(obs),
            self._to_torch(next_obs),
            as_tensor(reward, torch.float32),
            as_tensor(terminated, torch.bool),
            as_tensor(truncated, torch.bool),
        )
