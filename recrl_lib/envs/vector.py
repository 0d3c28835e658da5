"""The one vector-env contract the training loops use: batched torch tensors, same-step reset.

    env = TorchVectorEnv(UserSimulator(world, config, batch_size=32))   # the simulator
    env = TorchVectorEnv.make("CartPole-v1", num_envs=8)                # any Gymnasium env
    obs = env.reset(seed=0)                                             # dict of [B, ...]
    obs, next_obs, reward, terminated, truncated = env.step(actions)   # actions: [B]

``next_obs`` is where each step led (a finished episode's last observation); ``obs`` is what
to act on next (the first observation of a new episode where one finished, else ``next_obs``).
``calls`` counts resets and steps, so a training loop can tell whether someone else stepped
the env since it last did (its episodes would not continue where it left them).
Observations are dicts of tensors: the simulator's own keys, or ``{"obs": [B, D] float32}``
for a Gymnasium env with a ``Box`` observation.

The simulator is stepped directly, on its device, with no NumPy round trip; any other source
is a ``gymnasium.vector.VectorEnv`` with same-step auto-reset (``RecommenderVectorEnv`` or a
``SyncVectorEnv``), converted at the boundary.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from recrl_lib.device import get_device
from recrl_lib.envs.simulator import UserSimulator


class TorchVectorEnv:
    """See the module docstring. ``num_envs``, ``device``, ``n_actions`` describe the batch."""

    def __init__(self, source: UserSimulator | gym.vector.VectorEnv, device=None):
        self.calls = 0
        if isinstance(source, UserSimulator):
            self.sim, self.envs = source, None
            self.num_envs, self.device = source.batch_size, source.device
            self.n_actions = source.world.n_items
            return
        if not isinstance(source, gym.vector.VectorEnv):
            raise TypeError(
                "TorchVectorEnv wraps a UserSimulator or a gymnasium.vector.VectorEnv, "
                f"got {type(source).__name__}"
            )
        mode = source.metadata.get("autoreset_mode")
        if mode != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError(
                f"TorchVectorEnv needs same-step auto-reset, got {mode}: build the vector env "
                "with autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP"
            )
        if not isinstance(source.single_action_space, gym.spaces.Discrete):
            raise TypeError(
                f"TorchVectorEnv needs a Discrete action space, got {source.single_action_space}"
            )
        space = source.single_observation_space
        if not isinstance(space, gym.spaces.Box | gym.spaces.Dict):
            raise TypeError(f"TorchVectorEnv needs a Box or Dict observation, got {space}")
        self.sim, self.envs = None, source
        self.num_envs = source.num_envs
        self.device = torch.device(device) if device is not None else get_device()
        self.n_actions = int(source.single_action_space.n)
        self.obs_dim = int(np.prod(space.shape)) if isinstance(space, gym.spaces.Box) else None

    @classmethod
    def make(cls, env_id_or_factory, num_envs: int = 8, device=None) -> TorchVectorEnv:
        """``num_envs`` copies of a Gymnasium env (an id or a factory) in a ``SyncVectorEnv``."""
        if isinstance(env_id_or_factory, str):
            factory = lambda: gym.make(env_id_or_factory)  # noqa: E731
        else:
            factory = env_id_or_factory
        envs = gym.vector.SyncVectorEnv(
            [factory] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        return cls(envs, device)

    # ------------------------------------------------------------------ conversions

    def _to_torch(self, obs) -> dict[str, torch.Tensor]:
        if not isinstance(obs, dict):
            x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            return {"obs": x.reshape(self.num_envs, -1)}
        out = {}
        for key, value in obs.items():
            x = torch.as_tensor(np.asarray(value), device=self.device)
            if key == "mask":
                x = x.bool()
            elif x.dtype == torch.float64:
                x = x.float()
            out[key] = x
        return out

    @staticmethod
    def _replace_rows(obs, final, rows: np.ndarray):
        """A copy of ``obs`` whose ``rows`` come from ``final`` (Gymnasium's final_obs)."""
        if isinstance(obs, dict):
            if isinstance(final, dict):  # batched, e.g. RecommenderVectorEnv
                return {k: np.where(_expand(rows, v), final[k], v) for k, v in obs.items()}
            final = {k: [f[k] if f is not None else None for f in final] for k in obs}
            out = {k: v.copy() for k, v in obs.items()}
            for k in out:
                for i in np.flatnonzero(rows):
                    out[k][i] = final[k][i]
            return out
        out = obs.copy()
        for i in np.flatnonzero(rows):
            out[i] = final[i]
        return out

    # ------------------------------------------------------------------ the contract

    def reset(self, seed: int | None = None) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.sim is not None:
            return self.sim.reset(seed=seed)
        return self._to_torch(self.envs.reset(seed=seed)[0])

    def step(self, actions: torch.Tensor):
        """actions [B] -> (obs, next_obs, reward [B], terminated [B], truncated [B])."""
        self.calls += 1
        if self.sim is not None:
            next_obs, reward, terminated, truncated, _ = self.sim.step(actions)
            done = terminated | truncated
            obs = self.sim.reset(rows=done) if done.any() else next_obs
            return obs, next_obs, reward, terminated, truncated
        obs, reward, terminated, truncated, infos = self.envs.step(actions.cpu().numpy())
        next_obs = obs
        if "_final_obs" in infos:
            next_obs = self._replace_rows(obs, infos["final_obs"], infos["_final_obs"])
        return (
            self._to_torch(obs),
            self._to_torch(next_obs),
            torch.as_tensor(reward, dtype=torch.float32, device=self.device),
            torch.as_tensor(terminated, dtype=torch.bool, device=self.device),
            torch.as_tensor(truncated, dtype=torch.bool, device=self.device),
        )


def _expand(rows: np.ndarray, like: np.ndarray) -> np.ndarray:
    return rows.reshape(-1, *([1] * (like.ndim - 1)))
