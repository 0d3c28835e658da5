"""Deep Q-Networks (Mnih et al., 2015) with the standard improvements, for batched envs.

Read top to bottom:

1. **Q-networks.** ``RecQNetwork`` scores every item at once, Q(s, a) = v(s) + f(s) · x_a,
   where x_a comes from an :class:`ItemTable` (recommender-side item vectors: text and/or an
   MF the recommender fitted, plus optional ID embeddings), so it can score items it never
   trained on (``restrict_to`` limits which items it may recommend: train warm, test cold).
   ``MLPQNetwork`` is the plain head for any ``Box`` observation.
2. **Replay buffer** on the device, stored time-major ``[T, num_envs]`` so that **n-step
   returns** are computed when sampling.
3. **TD target** (``td_target``): G + γᵐ max_a' Q_target(s', a') — or, with **double DQN**,
   Q_target(s', argmax_a' Q_online(s', a')) — over valid actions a'. G sums the m ≤ n rewards
   before the session ends or n steps pass. A *terminated* session has no bootstrap term; a
   *truncated* one (cut from outside) bootstraps from its final observation.
4. **Training loop**: ε-greedy batched collection, **Huber loss**, **gradient clipping**, a
   **target network** updated by hard copies or Polyak averaging. Collection continues across
   ``train`` calls: sessions are never stitched together.
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

from recrl_lib.agents.baselines import Policy
from recrl_lib.agents.schedules import EpsilonSchedule
from recrl_lib.agents.session import ItemMask, SessionReader
from recrl_lib.device import get_device
from recrl_lib.encoders.history import ItemTable

# ----------------------------------------------------------------------------- 1. Q-networks


class RecQNetwork(ItemMask):
    """Q-values of every item from the observed session: obs -> [B, N].

    h      = HistoryEncoder(last ``window`` items, responses = (click, rating), mask)  [B, D]
    f(s)   = MLP([h, step, session totals (, user features)])  ·  x_a = ItemTable(a)   [B, N]
    Q(s,a) = v(s) + f(s) · x_a

    Valid actions: allowed items (``restrict_to``, e.g. train on a warm catalogue, then test on
    cold items) not in the observed session log (no repeats).
    """

    def __init__(
        self,
        items: ItemTable,
        *,
        history: str = "mean",
        window: int = 10,
        n_features: int = 0,
        user_vectors: torch.Tensor | None = None,
        hidden: int = 128,
    ):
        super().__init__(items.n_items)
        self.items = items
        self.reader = SessionReader(items, history, window, n_features, user_vectors)
        self.mlp = nn.Sequential(
            nn.Linear(self.reader.out_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, items.dim + 1),
        )

    def forward(
        self, obs: dict[str, torch.Tensor], table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """obs -> Q [B, N]. ``table`` ([N, D], ``items.all()``) may be passed in when the
        caller already computed it with the same weights."""
        if table is None:
            table = self.items.all()  # computed once for the history and the scores
        out = self.mlp(self.reader(obs, table))
        value, query = out[:, :1], out[:, 1:]
        return value + query @ table.T


class MLPQNetwork(nn.Module):
    """Q-values from a flat observation: obs["obs"] [B, O] -> [B, A]; every action valid."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_actions),
        )
        self.n_actions = n_actions

    def forward(self, obs: dict[str, torch.Tensor], table=None) -> torch.Tensor:
        return self.net(obs["obs"])

    def valid_actions(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = obs["obs"]
        return torch.ones(x.shape[0], self.n_actions, dtype=torch.bool, device=x.device)


# ----------------------------------------------------------------------------- 2. replay buffer


def n_step_returns(
    rewards: torch.Tensor, done: torch.Tensor, terminated: torch.Tensor, gamma: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The n-step return of each row of a buffer slice: the n steps that follow one transition.

    rewards, done, terminated: [B, n] (``done`` = terminated or truncated). Returns
    (G [B], discount [B], last [B]): G = Σ_{k<m} γ^k r_k over the m ≤ n steps up to and
    including the first done step; discount = γ^m to bootstrap with, or 0 if the session
    terminated within them; last = m − 1, the step whose next observation to bootstrap from.
    """
    batch, n = rewards.shape
    ret = torch.zeros(batch, device=rewards.device)
    discount = torch.ones(batch, device=rewards.device)
    running = torch.ones(batch, dtype=torch.bool, device=rewards.device)
    last = torch.zeros(batch, dtype=torch.long, device=rewards.device)
    for k in range(n):
        ret += running * discount * rewards[:, k]
        discount = torch.where(running, discount * gamma, discount)
        last = torch.where(running, k, last)
        running = running & ~done[:, k]
    ended_by_termination = terminated.gather(1, last[:, None]).squeeze(1)
    return ret, torch.where(ended_by_termination, torch.zeros_like(discount), discount), last


class ReplayBuffer:
    """Transitions stored time-major ``[T, num_envs]`` in a ring on the device.

    Sampling picks (t, env) and follows the same env for up to ``n_step`` steps, stopping at
    the end of a session, to build the n-step return.
    """

    def __init__(self, capacity: int, num_envs: int, device: torch.device, n_step: int = 1):
        self.T = capacity // num_envs
        if n_step > self.T:
            raise ValueError(
                f"a buffer of {capacity} transitions holds {self.T} steps of {num_envs} envs, "
                f"fewer than n_step={n_step}: it could never sample. Raise buffer_size to at "
                f"least {n_step * num_envs}"
            )
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
        item = {
            "obs": obs,
            "next_obs": next_obs,
            "action": action,
            "reward": reward,
            "terminated": terminated,
            "done": terminated | truncated,
        }
        if self.storage is None:
            self._allocate(item)
        for group in ("obs", "next_obs"):
            for k, v in item[group].items():
                self.storage[f"{group}/{k}"][self.pos] = v
        for k in ("action", "reward", "terminated", "done"):
            self.storage[k][self.pos] = item[k]
        self.pos = (self.pos + 1) % self.T
        self.size = min(self.size + 1, self.T)

    def cut(self) -> None:
        """Mark the newest step of every env as the end of its session (without terminating):
        n-step returns stop there and bootstrap from its stored next observation."""
        if self.size:
            self.storage["done"][(self.pos - 1) % self.T] = True

    def __len__(self) -> int:
        return self.size * self.num_envs

    def sample(self, batch_size: int, n_step: int, gamma: float, generator: torch.Generator):
        """A batch: obs, action, n-step return, bootstrap discount (0 if terminated), next_obs."""
        if self.size < n_step:
            raise RuntimeError(f"the buffer holds {self.size} steps; n_step={n_step} needs more")
        dev, S = self.device, self.storage
        age = torch.randint(self.size - n_step + 1, (batch_size,), generator=generator, device=dev)
        t = (self.pos - self.size + age) % self.T
        env = torch.randint(self.num_envs, (batch_size,), generator=generator, device=dev)
        slots = (t[:, None] + torch.arange(n_step, device=dev)) % self.T  # [B, n]
        envs = env[:, None].expand_as(slots)
        ret, bootstrap, offset = n_step_returns(
            S["reward"][slots, envs], S["done"][slots, envs], S["terminated"][slots, envs], gamma
        )
        last = slots.gather(1, offset[:, None]).squeeze(1)  # the slot the return ends with
        return {
            "obs": {k[4:]: v[t, env] for k, v in S.items() if k.startswith("obs/")},
            "action": S["action"][t, env].long(),
            "return": ret,
            "discount": bootstrap,
            "next_obs": {k[9:]: v[last, env] for k, v in S.items() if k.startswith("next_obs/")},
        }

    def state_dict(self) -> dict:
        return {"pos": self.pos, "size": self.size, "storage": self.storage}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.size = state["pos"], state["size"]
        storage = state["storage"]
        if storage is not None:
            storage = {k: v.to(self.device) for k, v in storage.items()}
        self.storage = storage


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
    valid actions. ``discount`` is γᵐ (m = steps summed in G), or 0 where the session
    terminated within them.
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
    """DQN settings; the defaults are lesson 04's (chosen by measuring, see the lesson)."""

    gamma: float = 0.9  # discount; 0 turns DQN into a contextual bandit (myopic)
    n_step: int = 3  # rewards summed before bootstrapping
    lr: float = 3e-4
    buffer_size: int = 200_000  # transitions
    batch_size: int = 128
    learning_starts: int = 5_000  # transitions collected before the first update
    gradient_steps: int = 1  # updates per vector-env step
    double: bool = True  # double-DQN targets
    target_update: str = "polyak"  # "polyak" (every update) or "hard" (every target_interval)
    tau: float = 0.01  # Polyak rate
    target_interval: int = 500  # updates between hard copies
    huber_delta: float = 1.0
    max_grad_norm: float = 10.0
    epsilon: EpsilonSchedule = field(default_factory=lambda: EpsilonSchedule(1.0, 0.05, 30_000))
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.epsilon, dict):  # from a checkpoint
            self.epsilon = EpsilonSchedule(**self.epsilon)
        if self.target_update not in ("polyak", "hard"):
            raise ValueError(
                f"target_update must be 'polyak' or 'hard', got {self.target_update!r}"
            )
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {self.n_step}")


def huber(prediction: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    """Mean Huber loss: ½e² for |e| ≤ δ, δ(|e| − ½δ) beyond — squared near 0, linear far out,
    so one wild target cannot blow up a gradient."""
    return F.huber_loss(prediction, target, delta=delta)


class DQN:
    """A DQN agent: ``train(env, steps)``, ``act(obs)``, ``policy()``, ``save``/``load``."""

    # The two formulas exercise 04 asks learners to write: assign your own functions to an
    # agent (``agent.td_target = mine``) to train with them.
    td_target = staticmethod(td_target)
    loss = staticmethod(huber)

    def __init__(self, q_network: nn.Module, config: DQNConfig | None = None, *, device=None):
        self.config = config or DQNConfig()
        self.device = torch.device(device) if device is not None else get_device()
        self.q = q_network.to(self.device)
        self.target = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=self.config.lr)
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        self.steps, self.updates = 0, 0  # env transitions seen; gradient updates made
        self.buffer: ReplayBuffer | None = None
        # Collection state kept between train() calls, so sessions continue where they were.
        self.env, self.env_calls = None, None
        self.obs: dict[str, torch.Tensor] | None = None
        self.episode_return: torch.Tensor | None = None
        self.finished: list[float] = []  # returns of sessions ended since the last log row
        self.next_log: int | None = None

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

    def policy(self, name: str = "DQN") -> Policy:
        """The greedy policy in the course's protocol (``policy(obs)``, ``policy.rank``)."""
        allowed = getattr(self.q, "allowed", None)
        n_items = allowed.shape[0] if allowed is not None else self.q.n_actions
        return Policy(name, self.q, n_items, valid=self.q.valid_actions)

    def update(self) -> dict[str, float]:
        """One gradient step on a replayed batch; returns the loss and the mean Q."""
        c = self.config
        batch = self.buffer.sample(c.batch_size, c.n_step, c.gamma, self.generator)
        table = self.q.items.all() if hasattr(self.q, "items") else None  # one projection
        q_taken = self.q(batch["obs"], table).gather(1, batch["action"][:, None]).squeeze(1)
        with torch.no_grad():
            if c.gamma == 0:  # a contextual bandit: the target is the reward, no next state
                y = batch["return"]
            else:
                next_obs = batch["next_obs"]
                next_valid = self.q.valid_actions(next_obs)
                next_q_target = self.target(next_obs)
                if c.double:  # the online net's table, reused without its graph
                    online_table = None if table is None else table.detach()
                    next_q_online = self.q(next_obs, online_table)
                else:
                    next_q_online = next_q_target
                y = self.td_target(
                    batch["return"],
                    batch["discount"],
                    next_q_online,
                    next_q_target,
                    next_valid,
                    double=c.double,
                )
        loss = self.loss(q_taken, y, c.huber_delta)
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

    def _start_collection(self, env, log_every: int) -> None:
        """New sessions on ``env``; a seam with earlier data in the buffer becomes a cut."""
        if self.buffer is not None:
            self.buffer.cut()
        self.env = env
        self.obs = env.reset(seed=self.config.seed + self.steps)
        self.env_calls = getattr(env, "calls", None)
        self.episode_return = torch.zeros(env.num_envs, device=self.device)
        self.finished = []
        self.next_log = self.steps + log_every

    def train(
        self, env, total_steps: int, *, log_every: int = 5_000, progress: bool = True
    ) -> pd.DataFrame:
        """Collect ``total_steps`` transitions from the vector ``env`` and learn from them.

        Calling ``train`` again with the same env, untouched in between, continues its sessions:
        two calls of N/2 give the same agent as one of N (when N/2 is a whole number of vector
        steps; the histories match too when it is a multiple of ``log_every``). Another env, or
        one stepped or reset by someone else since, starts new sessions, and the last stored
        step becomes a cut: sessions are never stitched together. Returns this call's history:
        a row every ``log_every`` transitions (and at the end of the call) with steps, episodes,
        the mean training return of the sessions that ended since the last row, epsilon, loss,
        mean Q.
        """
        c = self.config
        if self.buffer is None:
            self.buffer = ReplayBuffer(c.buffer_size, env.num_envs, self.device, c.n_step)
        if env.num_envs != self.buffer.num_envs:
            raise ValueError(
                f"this agent's replay buffer holds {self.buffer.num_envs} envs per step; the env "
                f"has {env.num_envs}. Train with the same number of parallel users, or a new agent"
            )
        untouched = getattr(env, "calls", None) == self.env_calls
        if env is not self.env or not untouched:
            self._start_collection(env, log_every)
        rows, stats, end = [], {}, self.steps + total_steps
        bar = tqdm(total=total_steps, desc="DQN", unit="step", disable=not progress, mininterval=2)
        while self.steps < end:
            epsilon = c.epsilon(self.steps)
            action = self.act(self.obs, epsilon)
            obs, next_obs, reward, terminated, truncated = env.step(action)
            self.buffer.add(self.obs, action, reward, next_obs, terminated, truncated)
            self.episode_return += reward
            done = terminated | truncated
            if done.any():
                self.finished.extend(self.episode_return[done].tolist())
                self.episode_return[done] = 0.0
            self.obs = obs
            self.env_calls = getattr(env, "calls", None)
            self.steps += env.num_envs
            bar.update(env.num_envs)
            if len(self.buffer) >= c.learning_starts and self.buffer.size >= c.n_step:
                for _ in range(c.gradient_steps):
                    stats = self.update()
            if self.steps >= self.next_log or self.steps >= end:
                mean_return = float(np.mean(self.finished)) if self.finished else np.nan
                rows.append(
                    {
                        "step": self.steps,
                        "episodes": len(self.finished),
                        "return": mean_return,
                        "epsilon": epsilon,
                        **stats,
                    }
                )
                self.finished = []
                while self.next_log <= self.steps:
                    self.next_log += log_every
        bar.close()
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike, *, include_buffer: bool = True) -> None:
        """Everything a resumed run needs, in one file: weights, target, optimiser, config,
        counters, the random generator, the collection state and (by default) the buffer."""
        collection = None
        if self.obs is not None:
            collection = {
                "obs": self.obs,
                "episode_return": self.episode_return,
                "finished": self.finished,
                "next_log": self.next_log,
            }
        state = {
            "q": self.q.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "config": asdict(self.config),
            "steps": self.steps,
            "updates": self.updates,
            "generator": self.generator.get_state(),
            "collection": collection,
            "buffer": self.buffer.state_dict() if include_buffer and self.buffer else None,
        }
        torch.save(state, path)

    @classmethod
    def load(cls, path: str | os.PathLike, q_network: nn.Module, *, env=None, device=None) -> DQN:
        """Rebuild an agent saved by :meth:`save` around a network of the same shape.

        With ``env`` (in the state it had when the agent was saved, e.g. restored with
        ``UserSimulator.load_state_dict``), training continues its sessions exactly: the
        resumed run repeats the uninterrupted one. Without it, the next ``train`` call starts
        new sessions.
        """
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no DQN checkpoint at {path}; save one with agent.save(path)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        agent = cls(q_network, DQNConfig(**state["config"]), device=device)
        agent.q.load_state_dict(state["q"])
        agent.target.load_state_dict(state["target"])
        agent.optimizer.load_state_dict(state["optimizer"])
        agent.steps, agent.updates = state["steps"], state["updates"]
        agent.generator.set_state(state["generator"])
        if state["buffer"] is not None:
            num_envs = state["buffer"]["storage"]["reward"].shape[1]
            c = agent.config
            agent.buffer = ReplayBuffer(c.buffer_size, num_envs, agent.device, c.n_step)
            agent.buffer.load_state_dict(state["buffer"])
        collection = state["collection"]
        if env is not None and collection is not None:
            agent.env, agent.env_calls = env, getattr(env, "calls", None)
            agent.obs = {k: v.to(agent.device) for k, v in collection["obs"].items()}
            agent.episode_return = collection["episode_return"].to(agent.device)
            agent.finished, agent.next_log = collection["finished"], collection["next_log"]
        return agent
