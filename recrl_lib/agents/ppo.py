"""Proximal Policy Optimization (Schulman et al., 2017), with REINFORCE as a special case.

Read top to bottom; each implementation detail is one named line (the list follows Huang et al.,
2022, "The 37 Implementation Details of Proximal Policy Optimization", and CleanRL):

1. **Actor-critic networks.** ``RecActorCritic`` scores every item, logits = f(s) · x_a over the
   valid items (like DQN's head, so it can score items it never trained on), and a critic
   v(s). The actor and the critic have **separate trunks** (Andrychowicz et al., 2021: sharing
   lets the value loss pull the policy's features around). ``MLPActorCritic`` is the plain
   version for any ``Box`` observation. **Orthogonal initialisation** of every MLP layer.
2. **Rollouts** of ``num_steps`` batched steps of a ``TorchVectorEnv``: observations, actions,
   log-probabilities, values, rewards, and the value of where each step led.
3. **GAE(λ)** (``gae``): advantages that stop at a terminated step and bootstrap a cut one.
4. **The loss** (``ppo_loss``): the **clipped surrogate**, an optionally **clipped value
   loss**, an **entropy bonus**.
5. **Updates**: **advantage normalisation** per minibatch, **minibatch epochs**, **learning-rate
   annealing**, **global gradient clipping**, **approximate-KL early stopping**.

REINFORCE is the same code with PPO's parts switched off (``PPOConfig.reinforce``): one
gradient step per rollout on whole sessions, no clipping, λ = 1 (Monte-Carlo returns), with or
without the critic as a baseline.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from recrl_lib.agents.baselines import Policy
from recrl_lib.agents.session import ItemMask, SessionTrunk, layer_init
from recrl_lib.device import get_device
from recrl_lib.encoders.history import ItemTable

Observation = dict[str, torch.Tensor]

# ----------------------------------------------------------------------------- 1. networks


class RecActorCritic(ItemMask):
    """A policy over every item and a value, from the observed session (separate trunks).

    actor:  logits(s, a) = f(s) · x_a over valid items (not in the session log, allowed)  [B, N]
    critic: v(s)                                                                          [B]

    The critic reads the actor's item vectors without their gradient: the value loss trains
    the critic's own encoder and MLP, never the policy's parameters.
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
        super().__init__(items.n_items)  # valid actions: allowed (``restrict_to``), not shown
        self.items = items
        # The policy's last layer starts near zero (gain 0.01): every item about equally likely.
        trunk = (items, history, window, n_features, hidden)
        self.actor = SessionTrunk(*trunk, items.dim, 0.01, user_vectors)
        self.critic = SessionTrunk(*trunk, 1, 1.0, user_vectors)

    @property
    def n_actions(self) -> int:
        return self.items.n_items

    def item_vectors(self) -> torch.Tensor:
        """[N, dim]: every item's vector x_a. Compute it once per rollout or minibatch and pass
        it to ``logits`` and ``value``: projecting the catalogue is the costly part."""
        return self.items.all()

    def logits(self, obs: Observation, table: torch.Tensor | None = None) -> torch.Tensor:
        """[B, N]: unnormalised log-probabilities f(s) · x_a, before masking."""
        table = self.item_vectors() if table is None else table
        return self.actor(obs, table) @ table.T

    def value(self, obs: Observation, table: torch.Tensor | None = None) -> torch.Tensor:
        """[B]: v(s); the item vectors reach the critic without their gradient."""
        table = self.item_vectors() if table is None else table
        return self.critic(obs, table.detach())[:, 0]


class MLPActorCritic(nn.Module):
    """Separate two-layer tanh MLPs for the policy and the value of a flat ``obs["obs"]`` [B, O]."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64):
        super().__init__()

        def trunk(out: int, gain: float) -> nn.Sequential:
            return nn.Sequential(
                layer_init(nn.Linear(obs_dim, hidden)),
                nn.Tanh(),
                layer_init(nn.Linear(hidden, hidden)),
                nn.Tanh(),
                layer_init(nn.Linear(hidden, out), gain=gain),
            )

        self.actor, self.critic, self.n_actions = trunk(n_actions, 0.01), trunk(1, 1.0), n_actions

    def valid_actions(self, obs: Observation) -> torch.Tensor:
        x = obs["obs"]
        return torch.ones(x.shape[0], self.n_actions, dtype=torch.bool, device=x.device)

    def item_vectors(self) -> None:  # no item table: actions are plain indices
        return None

    def logits(self, obs: Observation, table: None = None) -> torch.Tensor:
        return self.actor(obs["obs"])

    def value(self, obs: Observation, table: None = None) -> torch.Tensor:
        return self.critic(obs["obs"])[:, 0]


def sample(log_probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row from the categorical π = exp(log_probs) [B, N] -> [B]: the Gumbel-max
    trick, argmax(log π + g) with g = −log(−log u), u ~ U(0, 1); items with π = 0 never win."""
    u = torch.rand(log_probs.shape, generator=generator, device=log_probs.device)
    return (log_probs - torch.log(-torch.log(u))).argmax(-1)


def log_probs_and_entropy(
    logits: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked softmax: (log π(·|s) [B, N], with −inf on invalid items; entropy H [B]).

    H = −Σ_a π(a|s) log π(a|s) over valid items (an invalid item has π = 0 and adds nothing).
    """
    log_probs = torch.log_softmax(logits.masked_fill(~valid, -float("inf")), dim=-1)
    entropy = -(log_probs.exp() * log_probs.masked_fill(~valid, 0.0)).sum(-1)
    return log_probs, entropy


# ----------------------------------------------------------------------------- 3. GAE


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016) over a rollout.

    rewards, values, next_values, terminated, done: [T, E]; ``next_values[t]`` is the value of
    the observation step t led to (a finished session's last one), ``done`` = terminated or
    cut (truncated). Returns (advantages, returns), each [T, E]:

        δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t)
        A_t = δ_t + γ λ (1 − done_t) A_{t+1},   A_T = 0 (the rollout's end: δ bootstraps there)
        returns_t = A_t + V(s_t)                 (the critic's target)

    λ = 0 gives the one-step TD advantage; λ = 1 the Monte-Carlo return minus V(s_t).
    """
    not_terminated = 1.0 - terminated.to(rewards.dtype)
    continues = 1.0 - done.to(rewards.dtype)
    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + gamma * lam * continues[t] * running
        advantages[t] = running
    return advantages, advantages + values


def returns_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = Σ_{t' ≥ t} γ^(t'−t) r_t' within the session; rewards [T, B] -> [T, B]: lesson 05's
    :func:`gae` with V = 0 and λ = 1, where A_t is the return itself."""
    zeros, never = torch.zeros_like(rewards), torch.zeros_like(rewards, dtype=torch.bool)
    return gae(rewards, zeros, zeros, never, never, gamma, 1.0)[0]


# ----------------------------------------------------------------------------- 4. the loss


def clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float | None
) -> torch.Tensor:
    """Per step: min(r A, clip(r, 1 − ε, 1 + ε) A); without ε (None), r A.

    The min makes it a pessimistic bound: a step gains nothing from pushing r past 1 + ε when
    A > 0 (or below 1 − ε when A < 0), so its gradient there is zero — but a step that made
    things worse is never clipped away.
    """
    if clip_coef is None:
        return ratio * advantages
    return torch.min(ratio * advantages, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)


def ppo_loss(
    new_log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    *,
    clip_coef: float | None = 0.2,
    value_clip: float | None = None,
    vf_coef: float = 0.5,
    ent_coef: float = 0.01,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's loss on a minibatch; every argument but the coefficients is [B].

    ratio r = π_new(a|s) / π_old(a|s) = exp(new_log_probs − old_log_probs)
    policy  = −mean(min(r A, clip(r, 1 − ε, 1 + ε) A))   (ε = ``clip_coef``; None: −mean(r A))
    value   = ½ mean((V − R)²), or with ``value_clip`` ½ mean(max((V − R)², (V_clip − R)²)),
              V_clip = V_old + clip(V − V_old, −value_clip, value_clip)
    loss    = policy + vf_coef · value − ent_coef · mean(entropy)

    ``weights`` [B] (0 or 1) leave steps out of every mean. Returns (loss, parts), where parts
    holds the policy, value and entropy terms, the approximate KL(old ‖ new) = mean((r − 1) −
    log r) and the fraction of clipped ratios.
    """
    weights = torch.ones_like(advantages) if weights is None else weights.float()
    total = weights.sum().clamp(min=1.0)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * weights).sum() / total

    log_ratio = new_log_probs - old_log_probs
    ratio = log_ratio.exp()
    policy = -mean(clipped_surrogate(ratio, advantages, clip_coef))
    if value_clip is None:
        value = 0.5 * mean((new_values - returns) ** 2)
    else:
        clipped_values = old_values + (new_values - old_values).clamp(-value_clip, value_clip)
        value = 0.5 * mean(torch.max((new_values - returns) ** 2, (clipped_values - returns) ** 2))
    entropy_term = mean(entropy)
    loss = policy + vf_coef * value - ent_coef * entropy_term
    with torch.no_grad():
        approx_kl = mean((ratio - 1) - log_ratio)
        clip_fraction = mean(((ratio - 1).abs() > (clip_coef or math.inf)).float())
    parts = {
        "policy": policy,
        "value": value,
        "entropy": entropy_term,
        "approx_kl": approx_kl,
        "clip_fraction": clip_fraction,
    }
    return loss, parts


# ----------------------------------------------------------------------------- 2. and 5. training


@dataclass
class PPOConfig:
    """PPO settings. ``PPOConfig.reinforce(baseline)`` switches PPO's parts off."""

    gamma: float = 0.9  # discount; 0 makes the agent myopic (a contextual bandit)
    gae_lambda: float = 0.95  # λ: 0 = one-step TD advantages, 1 = Monte-Carlo
    num_steps: int = 64  # steps per env in a rollout
    lr: float = 3e-4
    anneal_lr: bool = True  # linearly to 0 over ``total_steps``
    total_steps: int | None = None  # the planned budget (for annealing); None: constant lr
    update_epochs: int = 4  # passes over each rollout
    n_minibatches: int = 4
    clip_coef: float | None = 0.2  # ε of the clipped surrogate; None: no clipping
    value_clip: float | None = None  # clip the value update too (CleanRL's clip_vloss)
    normalize_advantages: bool = True  # per minibatch: zero mean, unit variance
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    use_critic: bool = True  # False: no value function (REINFORCE without a baseline)
    max_grad_norm: float | None = 0.5  # global gradient-norm clipping; None: off
    # Stop a rollout's epochs once the mean approximate KL of an epoch's minibatches passes it
    # (checked after each epoch; the first minibatch of epoch 1 always measures 0).
    target_kl: float | None = 0.02
    # Each rollout starts new sessions and keeps only whole ones: steps after a session ended
    # are not learned from, but still count in the budget (so set num_steps near the horizon).
    whole_sessions: bool = False
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(
                f"gamma and gae_lambda must be in [0, 1], got {self.gamma}, {self.gae_lambda}"
            )
        if self.num_steps < 1 or self.update_epochs < 1 or self.n_minibatches < 1:
            raise ValueError("num_steps, update_epochs and n_minibatches must be >= 1")
        if self.anneal_lr and self.total_steps is not None and self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {self.total_steps}")

    @classmethod
    def reinforce(cls, baseline: bool, **overrides) -> PPOConfig:
        """REINFORCE (Williams, 1992): one gradient step per rollout of whole sessions on the
        Monte-Carlo return (λ = 1), no ratio clipping, no advantage normalisation, no entropy
        bonus, no gradient clipping, no KL stop — with the critic as a baseline (A = G − V(s))
        or without (A = G)."""
        settings = dict(
            max_grad_norm=None,
            gae_lambda=1.0,
            update_epochs=1,
            n_minibatches=1,
            clip_coef=None,
            normalize_advantages=False,
            ent_coef=0.0,
            use_critic=baseline,
            target_kl=None,
            whole_sessions=True,
        )
        return cls(**(settings | overrides))


@dataclass
class Rollout:
    """``num_steps`` × ``num_envs`` transitions ([T, E] each; obs values [T, E, ...])."""

    obs: dict[str, torch.Tensor]
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    done: torch.Tensor
    next_values: torch.Tensor
    live: torch.Tensor  # steps that count (all, or those of whole sessions)
    entropy: torch.Tensor


class PPO:
    """A PPO (or REINFORCE) agent: ``train(env, steps)``, ``act(obs)``, ``policy()``, ``save``."""

    # The two formulas exercise 05 asks learners to write: assign your own functions to an
    # agent (``agent.gae = mine``) to train with them.
    gae = staticmethod(gae)
    loss = staticmethod(ppo_loss)

    def __init__(self, network: nn.Module, config: PPOConfig | None = None, *, device=None):
        self.config = config or PPOConfig()
        self.device = torch.device(device) if device is not None else get_device()
        self.net = network.to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.lr, eps=1e-5)
        self.generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        self.steps, self.updates = 0, 0  # env transitions collected; gradient steps taken
        # Collection state kept between train() calls, so sessions continue where they were.
        self.env, self.env_calls, self.obs = None, None, None
        self.episode_return: torch.Tensor | None = None
        self.finished: list[float] = []  # returns of the sessions the last rollout finished
        self.last_rollout: Rollout | None = None

    # ------------------------------------------------------------------ acting

    def _value(self, obs: Observation, table: torch.Tensor | None = None) -> torch.Tensor:
        if not self.config.use_critic:
            return torch.zeros(obs[next(iter(obs))].shape[0], device=self.device)
        return self.net.value(obs, table)

    @torch.no_grad()
    def act(self, obs: Observation, greedy: bool = False) -> torch.Tensor:
        """A sampled action per row (or the most likely valid one with ``greedy``) -> [B]."""
        log_probs, _ = log_probs_and_entropy(self.net.logits(obs), self.net.valid_actions(obs))
        if greedy:
            return log_probs.argmax(1)
        return sample(log_probs, self.generator)

    def policy(self, name: str = "PPO", greedy: bool = True, seed: int = 0) -> Policy:
        """The policy in the course's protocol: its most likely item (``greedy``), or a draw
        from π with its own generator (``seed``), so evaluating it leaves training untouched.
        A sampled policy's ``rank`` is not meaningful: only the drawn item scores."""
        n_items = self.net.n_actions
        if greedy:
            return Policy(name, self.net.logits, n_items, valid=self.net.valid_actions)
        generator = torch.Generator(device=self.device).manual_seed(seed)

        @torch.no_grad()
        def sampled_scores(obs: Observation) -> torch.Tensor:  # the drawn item scores highest
            log_probs, _ = log_probs_and_entropy(self.net.logits(obs), self.net.valid_actions(obs))
            drawn = sample(log_probs, generator)
            return torch.zeros_like(log_probs).scatter_(1, drawn[:, None], 1.0)

        return Policy(name, sampled_scores, n_items, valid=self.net.valid_actions)

    # ------------------------------------------------------------------ 2. rollouts

    @torch.no_grad()
    def collect(self, env) -> Rollout:
        """``num_steps`` batched steps from the current observations (or fresh sessions)."""
        c, T, E = self.config, self.config.num_steps, env.num_envs
        if c.whole_sessions or self.obs is None:  # whole sessions: every one starts here
            self.obs = env.reset(seed=c.seed + self.steps)
            self.episode_return = torch.zeros(E, device=self.device)
        obs = self.obs
        store = {
            k: torch.zeros((T, *v.shape), dtype=v.dtype, device=self.device) for k, v in obs.items()
        }
        names = ("log_probs", "values", "rewards", "next_values", "entropy")
        tensors = {name: torch.zeros(T, E, device=self.device) for name in names}
        actions = torch.zeros(T, E, dtype=torch.long, device=self.device)
        terminated = torch.zeros(T, E, dtype=torch.bool, device=self.device)
        done = torch.zeros_like(terminated)
        live = torch.ones_like(terminated)
        ended = torch.zeros(E, dtype=torch.bool, device=self.device)
        table = self.net.item_vectors()  # the policy does not change during a rollout
        finished, value = [], self._value(obs, table)
        for t in range(T):
            for k, v in obs.items():
                store[k][t] = v
            valid = self.net.valid_actions(obs)
            log_probs, entropy = log_probs_and_entropy(self.net.logits(obs, table), valid)
            action = sample(log_probs, self.generator)
            tensors["log_probs"][t] = log_probs.gather(1, action[:, None])[:, 0]
            tensors["entropy"][t], tensors["values"][t] = entropy, value
            obs, next_obs, reward, term, trunc = env.step(action)
            step_done = term | trunc
            actions[t], tensors["rewards"][t] = action, reward
            terminated[t], done[t] = term, step_done
            if c.whole_sessions:
                live[t] = ~ended
                ended |= step_done
            # The value of where each step led. Where a session ended, `obs` is already the
            # next user's: a cut session bootstraps from its own last observation instead
            # (a terminated one needs no value at all).
            value = self._value(obs, table)
            next_value = value
            if trunc.any():
                next_value = torch.where(trunc, self._value(next_obs, table), value)
            tensors["next_values"][t] = next_value
            self.episode_return += reward
            counted = step_done & live[t]
            finished.extend(self.episode_return[counted].tolist())
            self.episode_return[step_done] = 0.0
        if c.whole_sessions and not ended.all():
            raise RuntimeError(
                f"whole_sessions needs every session to end within num_steps={T}: raise it to "
                "the simulator's horizon"
            )
        self.obs, self.env_calls = obs, getattr(env, "calls", None)
        self.steps += T * E
        self.finished = finished
        flags = {"terminated": terminated, "done": done, "live": live}
        return Rollout(obs=store, actions=actions, **flags, **tensors)

    # ------------------------------------------------------------------ 5. updates

    def _learning_rate(self, collected_before: int) -> float:
        """lr · (1 − steps collected before this rollout / total_steps): the first update runs
        at the full rate, the last one above zero."""
        c = self.config
        if not c.anneal_lr or c.total_steps is None:
            return c.lr
        return c.lr * max(0.0, 1.0 - collected_before / c.total_steps)

    def update(self, rollout: Rollout) -> dict[str, float]:
        """PPO's epochs of minibatch gradient steps on one rollout."""
        c = self.config
        r = rollout
        advantages, returns = self.gae(
            r.rewards, r.values, r.next_values, r.terminated, r.done, c.gamma, c.gae_lambda
        )

        def flat(x: torch.Tensor) -> torch.Tensor:  # [T, E, ...] -> [T·E, ...]
            return x.reshape(-1, *x.shape[2:])

        obs = {k: flat(v) for k, v in r.obs.items()}
        batch = {
            "actions": flat(r.actions),
            "old_log_probs": flat(r.log_probs),
            "advantages": flat(advantages),
            "returns": flat(returns),
            "old_values": flat(r.values),
            "weights": flat(r.live).float(),
        }
        for group in self.optimizer.param_groups:  # learning-rate annealing
            group["lr"] = self._learning_rate(self.steps - r.actions.numel())
        n = len(batch["actions"])
        size = max(1, n // c.n_minibatches)
        stats: dict[str, float] = {}
        for epoch in range(1, c.update_epochs + 1):
            order = torch.randperm(n, generator=self.generator, device=self.device)
            kl_sum, batches = 0.0, 0
            for start in range(0, n - size + 1, size):
                index = order[start : start + size]
                mb_obs = {k: v[index] for k, v in obs.items()}
                mb = {k: v[index] for k, v in batch.items()}
                table = self.net.item_vectors()
                valid = self.net.valid_actions(mb_obs)
                log_probs, entropy = log_probs_and_entropy(self.net.logits(mb_obs, table), valid)
                new_log_probs = log_probs.gather(1, mb["actions"][:, None])[:, 0]
                adv = mb["advantages"]
                if c.normalize_advantages:
                    w = mb["weights"]
                    mean = (adv * w).sum() / w.sum().clamp(min=1)
                    std = (((adv - mean) ** 2 * w).sum() / w.sum().clamp(min=1)).sqrt()
                    adv = (adv - mean) / (std + 1e-8)
                new_values = self._value(mb_obs, table)
                loss, parts = self.loss(
                    new_log_probs,
                    mb["old_log_probs"],
                    adv,
                    new_values,
                    mb["old_values"],
                    mb["returns"],
                    entropy,
                    clip_coef=c.clip_coef,
                    value_clip=c.value_clip,
                    vf_coef=c.vf_coef if c.use_critic else 0.0,
                    ent_coef=c.ent_coef,
                    weights=mb["weights"],
                )
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"PPO loss became {loss.item()} at update {self.updates}: lower lr "
                        f"(now {c.lr}) or check the rewards for NaN"
                    )
                self.optimizer.zero_grad()
                loss.backward()
                if c.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(self.net.parameters(), c.max_grad_norm)
                self.optimizer.step()
                self.updates += 1
                kl_sum, batches = kl_sum + parts["approx_kl"].item(), batches + 1
                stats = {k: v.item() for k, v in parts.items()}
            stats["epochs"] = epoch
            if c.target_kl is not None and kl_sum / max(batches, 1) > c.target_kl:
                break  # the policy moved far enough from the one that collected the data
        return stats

    def train(
        self,
        env,
        total_steps: int,
        *,
        log_every: int | None = None,
        on_rollout=None,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Collect rollouts from the vector ``env`` and update on each, for ``total_steps``
        transitions. Returns a history row per rollout: steps, sessions ended, their mean
        return, the policy's mean entropy, the loss parts, the epochs run and the lr —
        plus whatever ``on_rollout(agent, rollout)`` returns as a dict (a diagnostic hook: it
        runs after the update and must not change the agent).

        Like DQN, a second call on the same, untouched env continues its sessions.
        """
        c = self.config
        if env is not self.env or getattr(env, "calls", None) != self.env_calls:
            self.env = env
            self.obs = env.reset(seed=c.seed + self.steps)
            self.env_calls = getattr(env, "calls", None)
            self.episode_return = torch.zeros(env.num_envs, device=self.device)
        rows, end = [], self.steps + total_steps
        bar = tqdm(total=total_steps, desc="PPO", unit="step", disable=not progress, mininterval=2)
        while self.steps < end:
            before = self.steps
            rollout = self.collect(env)
            self.last_rollout = rollout
            stats = self.update(rollout)
            live = rollout.live.float()
            entropy = (rollout.entropy * live).sum().item() / live.sum().item()
            extra = on_rollout(self, rollout) if on_rollout is not None else {}
            rows.append(
                {
                    "step": self.steps,
                    "episodes": len(self.finished),
                    "return": float(np.mean(self.finished)) if self.finished else np.nan,
                    "entropy": entropy,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    **stats,
                    **extra,
                }
            )
            bar.update(self.steps - before)
        bar.close()
        history = pd.DataFrame(rows)
        if log_every:  # fewer rows: the mean of the rollouts in each window
            history = history.groupby((history["step"] - 1) // log_every).mean()
        return history.reset_index(drop=True)

    def policy_gradient(self, rollout: Rollout, advantages: torch.Tensor) -> torch.Tensor:
        """The vanilla policy-gradient estimate ∇θ mean_t[log π(a_t|s_t) A_t] over the rollout's
        counted steps, as one flat vector of the policy's parameters (to study its variance)."""
        obs = {k: v.reshape(-1, *v.shape[2:]) for k, v in rollout.obs.items()}
        log_probs, _ = log_probs_and_entropy(self.net.logits(obs), self.net.valid_actions(obs))
        taken = log_probs.gather(1, rollout.actions.reshape(-1, 1))[:, 0]
        weights = rollout.live.reshape(-1).float()
        objective = (taken * advantages.reshape(-1) * weights).sum() / weights.sum()
        params = [p for p in self.net.parameters() if p.requires_grad]
        grads = torch.autograd.grad(objective, params, allow_unused=True)
        flat = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        return torch.cat([g.flatten() for g in flat])

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike) -> None:
        """Weights, optimiser, config, counters, the random generator and the collection state:
        with the env restored to its state at saving, a resumed run repeats the original."""
        collection = None
        if self.obs is not None:
            collection = {"obs": self.obs, "episode_return": self.episode_return}
        torch.save(
            {
                "net": self.net.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "config": asdict(self.config),
                "steps": self.steps,
                "updates": self.updates,
                "generator": self.generator.get_state(),
                "collection": collection,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike, network: nn.Module, *, env=None, device=None) -> PPO:
        """Rebuild an agent saved by :meth:`save` around a network of the same shape; with
        ``env`` (restored to its saved state) training continues its sessions exactly."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no PPO checkpoint at {path}; save one with agent.save(path)")
        state = torch.load(path, map_location="cpu", weights_only=False)
        agent = cls(network, PPOConfig(**state["config"]), device=device)
        agent.net.load_state_dict(state["net"])
        agent.optimizer.load_state_dict(state["optimizer"])
        agent.steps, agent.updates = state["steps"], state["updates"]
        agent.generator.set_state(state["generator"])
        if env is not None and state["collection"] is not None:
            agent.env, agent.env_calls = env, getattr(env, "calls", None)
            agent.obs = {k: v.to(agent.device) for k, v in state["collection"]["obs"].items()}
            agent.episode_return = state["collection"]["episode_return"].to(agent.device)
        return agent
