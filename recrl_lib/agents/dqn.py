"""Deep Q-Networks (Mnih et al., 2015) with the standard improvements, for batched envs.

Read top to bottom:

1. **Q-networks.** ``RecQNetwork`` scores every item at once, Q(s, a) = v(s) + f(s) · x_a,
   where x_a comes from an :class:`ItemTable` (recommender-side item vectors: text and/or an
   MF the recommender fitted, plus optional ID embeddings), so it can score items it never
   trained on (``restrict_to`` limits which items it may recommend: train warm, test cold).
   ``MLPQNetwork`` is the plain head for any ``Box`` observation.
2. **Replay buffer** on the device, stored time-major ``[T, num_envs]`` so that **n-step
   returns** are computed when sampling.
3. **TD target** (``td_target``): r + γⁿ max_a' Q_target(s', a') — or, with **double DQN**,
   Q_target(s', argmax_a' Q_online(s', a')). A *terminated* step has no bootstrap term; a
   *truncated* one (time limit) bootstraps from its final observation.
4. **Training loop**: ε-greedy batched collection, **Huber loss**, **gradient clipping**, a
   **target network** updated by hard copies or Polyak averaging.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from recrl_lib.agents.tabular import EpsilonSchedule
from recrl_lib.device import get_device
from recrl_lib.encoders.history import GRUHistoryEncoder, ItemTable, MeanHistoryEncoder

# ----------------------------------------------------------------------------- 1. Q-networks


class RecQNetwork(nn.Module):
    """Q-values of every item from the observed history: obs -> [B, N].

    state  h = HistoryEncoder(items, responses = (click, rating), mask)        [B, D]
    f(s)   = MLP([h, step, session])  ·  item vectors x_a = ItemTable(a)        [B, N]
    Q(s,a) = v(s) + f(s) · x_a
    """

    def __init__(
        self,
        items: ItemTable,
        *,
        history: str = "mean",
        hidden: int = 128,
        mask_history: bool = True,
    ):
        super().__init__()
        encoders = {"mean": MeanHistoryEncoder, "gru": GRUHistoryEncoder}
        if history not in encoders:
            raise ValueError(f"history must be one of {sorted(encoders)}, got {history!r}")
        self.items = items
        self.encoder = encoders[history](items, n_responses=2)
        self.mlp = nn.Sequential(nn.Linear(items.dim + 4, hidden), nn.ReLU(), nn.Linear(hidden, items.dim + 1))  # fmt: skip
        self.mask_history = mask_history
        # Items the network may recommend (see ``restrict_to``): all of them by default.
        self.register_buffer("allowed", torch.ones(items.n_items, dtype=torch.bool))

    def restrict_to(self, allowed: torch.Tensor | None) -> None:
        """Recommend only items where ``allowed`` ([N] bool) is True; ``None`` allows all.

        E.g. train on a warm catalogue, then restrict to cold items to test generalisation.
        """
        if allowed is None:
            self.allowed.fill_(True)
            return
        if allowed.shape != self.allowed.shape or allowed.dtype != torch.bool:
            raise ValueError(f"allowed must be a [{self.items.n_items}] bool tensor, got {allowed.dtype} {tuple(allowed.shape)}")  # fmt: skip
        if not allowed.any():
            raise ValueError("allowed must let at least one item through")
        self.allowed.copy_(allowed)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        responses = torch.stack([obs["clicks"], obs["ratings"]], dim=-1)
        h = self.encoder(obs["items"], obs["mask"], responses)
        out = self.mlp(torch.cat([h, obs["step"], obs["session"]], dim=-1))
        value, query = out[:, :1], out[:, 1:]
        return value + query @ self.items.all().T

    def valid_actions(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, N] bool: allowed items not among the observed recent history (no repeats)."""
        valid = self.allowed.expand(obs["items"].shape[0], -1).clone()
        if self.mask_history:
            rows = torch.arange(len(valid), device=valid.device)[:, None].expand_as(obs["items"])
            valid[rows[obs["mask"]], obs["items"][obs["mask"]]] = False
        return valid


class MLPQNetwork(nn.Module):
    """Q-values from a flat observation: obs["obs"] [B, O] -> [B, A]."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, n_actions),
        )  # fmt: skip
        self.n_actions = n_actions

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(obs["obs"])

    def valid_actions(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.ones(obs["obs"].shape[0], self.n_actions, dtype=torch.bool, device=obs["obs"].device)  # fmt: skip


# ----------------------------------------------------------------------------- 2. replay buffer


class ReplayBuffer:
    """Transitions stored time-major ``[T, num_envs]`` in a ring on the device.

    Sampling picks (t, env) and follows the same env for up to ``n_step`` steps, stopping at
    the end of an episode, to build the n-step return.
    """

    def __init__(self, capacity: int, num_envs: int, device: torch.device):
        self.T = max(1, capacity // num_envs)
        self.num_envs, self.device = num_envs, device
        self.pos, self.size = 0, 0  # next time slot to write; filled time slots
        self.storage: dict[str, torch.Tensor] | None = None

    def _allocate(self, example: dict[str, torch.Tensor]) -> None:
        def empty(t: torch.Tensor) -> torch.Tensor:
            return torch.zeros((self.T, *t.shape), dtype=t.dtype, device=self.device)

        self.storage = {f"obs/{k}": empty(v) for k, v in example["obs"].items()}
        self.storage |= {f"next_obs/{k}": empty(v) for k, v in example["next_obs"].items()}
        self.storage |= {k: empty(example[k]) for k in ("action", "reward", "terminated", "done")}

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        item = {"obs": obs, "next_obs": next_obs, "action": action, "reward": reward,
                "terminated": terminated, "done": terminated | truncated}  # fmt: skip
        if self.storage is None:
            self._allocate(item)
        for group in ("obs", "next_obs"):
            for k, v in item[group].items():
                self.storage[f"{group}/{k}"][self.pos] = v
        for k in ("action", "reward", "terminated", "done"):
            self.storage[k][self.pos] = item[k]
        self.pos = (self.pos + 1) % self.T
        self.size = min(self.size + 1, self.T)

    def __len__(self) -> int:
        return self.size * self.num_envs

    def sample(self, batch_size: int, n_step: int, gamma: float, generator: torch.Generator):
        """A batch: obs, action, n-step return, bootstrap discount (0 if terminated), next_obs."""
        if self.size < n_step:
            raise RuntimeError(f"the buffer holds {self.size} steps; n_step={n_step} needs more")
        dev, S = self.device, self.storage
        age = torch.randint(self.size - n_step + 1, (batch_size,), generator=generator, device=dev)  # fmt: skip
        t = (self.pos - self.size + age) % self.T
        env = torch.randint(self.num_envs, (batch_size,), generator=generator, device=dev)
        ret = torch.zeros(batch_size, device=dev)
        discount = torch.ones(batch_size, device=dev)
        running = torch.ones(batch_size, dtype=torch.bool, device=dev)
        last = t.clone()  # the time slot of the transition the return ends with
        for k in range(n_step):
            slot = (t + k) % self.T
            ret += running * discount * S["reward"][slot, env]
            discount = torch.where(running, discount * gamma, discount)
            last = torch.where(running, slot, last)
            running &= ~S["done"][slot, env]
        bootstrap = torch.where(S["terminated"][last, env], torch.zeros_like(discount), discount)
        return {
            "obs": {k[4:]: v[t, env] for k, v in S.items() if k.startswith("obs/")},
            "action": S["action"][t, env].long(),
            "return": ret,
            "discount": bootstrap,
            "next_obs": {k[9:]: v[last, env] for k, v in S.items() if k.startswith("next_obs/")},
        }


# ----------------------------------------------------------------------------- 3. TD target


def td_target(
    returns: torch.Tensor,
    discount: torch.Tensor,
    next_q_online: torch.Tensor,
    next_q_target: torch.Tensor,
    next_valid: torch.Tensor | None = None,
    *,
    double: bool = True,
) -> torch.Tensor:
    """y = G + discount · Q_target(s', a*)   returns, discount: [B]; next_q_*: [B, A] -> [B]

    a* = argmax Q_target(s', ·) (plain DQN) or argmax Q_online(s', ·) (double DQN), over
    valid actions. ``discount`` is γⁿ, or 0 where the episode terminated.
    """
    if next_valid is not None:
        next_q_online = next_q_online.masked_fill(~next_valid, -float("inf"))
        next_q_target = next_q_target.masked_fill(~next_valid, -float("inf"))
    chooser = next_q_online if double else next_q_target
    best = chooser.argmax(1, keepdim=True)
    next_value = next_q_target.gather(1, best).squeeze(1)
    # 0 · (-inf) would be NaN if no action were valid; a terminated step needs no value anyway
    next_value = torch.where(discount > 0, next_value, torch.zeros_like(next_value))
    return returns + discount * next_value


# ----------------------------------------------------------------------------- 4. training


@dataclass
class DQNConfig:
    gamma: float = 0.95  # discount; 0 turns DQN into a contextual bandit (myopic)
    n_step: int = 3  # steps summed before bootstrapping
    lr: float = 1e-3
    buffer_size: int = 200_000  # transitions
    batch_size: int = 256
    learning_starts: int = 5_000  # transitions collected before the first update
    gradient_steps: int = 1  # updates per vector-env step
    double: bool = True  # double-DQN targets
    target_update: str = "polyak"  # "polyak" (every update) or "hard" (every target_interval)
    tau: float = 0.01  # Polyak rate
    target_interval: int = 500  # updates between hard copies
    huber_delta: float = 1.0
    max_grad_norm: float = 10.0
    epsilon: EpsilonSchedule = field(default_factory=lambda: EpsilonSchedule(1.0, 0.05, 50_000))
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.epsilon, dict):  # from a checkpoint
            self.epsilon = EpsilonSchedule(**self.epsilon)
        if self.target_update not in ("polyak", "hard"):
            raise ValueError(f"target_update must be 'polyak' or 'hard', got {self.target_update!r}")  # fmt: skip
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")


class DQN:
    """A DQN agent: ``train(env, steps)``, ``act(obs)``, ``save``/``load``."""

    def __init__(self, q_network: nn.Module, config: DQNConfig | None = None, *, device=None):
        self.config = config or DQNConfig()
        self.device = torch.device(device) if device is not None else get_device()
        self.q = q_network.to(self.device)
        self.target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=self.config.lr)
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        self.steps, self.updates = 0, 0  # env transitions seen; gradient updates made
        self.buffer: ReplayBuffer | None = None

    @torch.no_grad()
    def act(self, obs: dict[str, torch.Tensor], epsilon: float = 0.0) -> torch.Tensor:
        """ε-greedy over valid actions -> [B]; ``epsilon=0`` is the greedy policy."""
        valid = self.q.valid_actions(obs)
        greedy = self.q(obs).masked_fill(~valid, -float("inf")).argmax(1)
        if epsilon <= 0:
            return greedy
        noise = torch.rand(valid.shape, generator=self.generator, device=self.device)
        random_valid = noise.masked_fill(~valid, -1.0).argmax(1)
        explore = torch.rand(len(greedy), generator=self.generator, device=self.device) < epsilon
        return torch.where(explore, random_valid, greedy)

    def policy(self):
        """The greedy policy as ``policy(sim, obs) -> actions`` (see ``evaluate_policy``)."""
        return lambda sim, obs: self.act(obs)

    def update(self) -> dict[str, float]:
        """One gradient step on a replayed batch; returns the loss and the mean Q."""
        c = self.config
        batch = self.buffer.sample(c.batch_size, c.n_step, c.gamma, self.generator)
        q_taken = self.q(batch["obs"]).gather(1, batch["action"][:, None]).squeeze(1)
        with torch.no_grad():
            next_valid = self.q.valid_actions(batch["next_obs"])
            next_q_target = self.target(batch["next_obs"])
            next_q_online = self.q(batch["next_obs"]) if c.double else next_q_target
            y = td_target(batch["return"], batch["discount"], next_q_online, next_q_target, next_valid, double=c.double)  # fmt: skip
        loss = F.huber_loss(q_taken, y, delta=c.huber_delta)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"DQN loss became {loss.item()} at update {self.updates}: lower lr (now {c.lr}) "
                "or max_grad_norm, or check the rewards for NaN"
            )
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.q.parameters(), c.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        # Target network: slowly tracks the online one, which keeps the TD target stable.
        if c.target_update == "polyak":
            with torch.no_grad():
                for target, online in zip(self.target.parameters(), self.q.parameters()):
                    target.lerp_(online, c.tau)
        elif self.updates % c.target_interval == 0:
            self.target.load_state_dict(self.q.state_dict())
        return {"loss": loss.item(), "q_mean": q_taken.mean().item()}

    def train(
        self, env, total_steps: int, *, log_every: int = 5_000, progress: bool = True
    ) -> pd.DataFrame:
        """Collect ``total_steps`` transitions from the vector ``env`` and learn from them.

        Returns a history table: steps, episodes, mean training return of the episodes that
        ended since the last row, epsilon, loss, mean Q.
        """
        c = self.config
        if self.buffer is None:
            self.buffer = ReplayBuffer(c.buffer_size, env.num_envs, self.device)
        obs = env.reset(seed=c.seed + self.steps)
        episode_return = torch.zeros(env.num_envs, device=self.device)
        finished, rows, stats = [], [], {}
        next_log = self.steps + log_every
        end = self.steps + total_steps
        with tqdm(total=total_steps, desc="DQN", unit="step", disable=not progress, mininterval=2) as bar:  # fmt: skip
            while self.steps < end:
                epsilon = c.epsilon(self.steps)
                action = self.act(obs, epsilon)
                new_obs, next_obs, reward, terminated, truncated = env.step(action)
                self.buffer.add(obs, action, reward, next_obs, terminated, truncated)
                episode_return += reward
                done = terminated | truncated
                if done.any():
                    finished.extend(episode_return[done].tolist())
                    episode_return[done] = 0.0
                obs = new_obs
                self.steps += env.num_envs
                bar.update(env.num_envs)
                if len(self.buffer) >= c.learning_starts and self.buffer.size >= c.n_step:
                    for _ in range(c.gradient_steps):
                        stats = self.update()
                if self.steps >= next_log or self.steps >= end:
                    rows.append({"step": self.steps, "episodes": len(finished),
                                 "return": float(np.mean(finished)) if finished else np.nan,
                                 "epsilon": epsilon, **stats})  # fmt: skip
                    finished, next_log = [], next_log + log_every
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike) -> None:
        """Weights, target, optimiser, config and step counters, in one file."""
        torch.save(
            {"q": self.q.state_dict(), "target": self.target.state_dict(),
             "optimizer": self.optimizer.state_dict(), "config": asdict(self.config),
             "steps": self.steps, "updates": self.updates},
            path,
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | os.PathLike, q_network: nn.Module, *, device=None) -> DQN:
        """Rebuild an agent saved by :meth:`save` around a network of the same shape."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no DQN checkpoint at {path}; save one with agent.save(path)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        agent = cls(q_network, DQNConfig(**state["config"]), device=device)
        agent.q.load_state_dict(state["q"])
        agent.target.load_state_dict(state["target"])
        agent.optimizer.load_state_dict(state["optimizer"])
        agent.steps, agent.updates = state["steps"], state["updates"]
        return agent
