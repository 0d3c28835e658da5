"""GRPO, group-relative policy optimisation (Shao et al., 2024), for the LM re-ranker.

PPO (lesson 05) needs a critic V(s) for its advantages. GRPO replaces it by a *group*: for each
prompt s it draws G recommendations a_1..a_G ~ π_old(· | s), gets their rewards r_1..r_G, and
scores each against its own group,

    A_g = (r_g − mean(r)) / (std(r) + ε)            (std over the group, ddof 0),

so a group whose rewards are all equal has A = 0 and teaches nothing (``frac_reward_zero_std``
counts them: trl's users' most common "loss is 0"). The loss is PPO's clipped surrogate plus a
KL penalty that keeps π_θ near the reference π_ref (the model with its adapters off),

    L(θ) = −mean_g min(ρ_g A_g, clip(ρ_g, 1 − ε_c, 1 + ε_c) A_g) + β · KL(π_θ ‖ π_ref),
    ρ_g = π_θ(a_g | s) / π_old(a_g | s).

Over C candidates the KL is exact, Σ_c π_θ(c) (log π_θ(c) − log π_ref(c)); trl, which works on
free text, uses the per-token k3 estimator exp(q − p) − (q − p) − 1 (log-probs p of π_θ, q of
π_ref), which :func:`k3_kl` gives for comparison. With one update per batch (μ = 1) ρ = 1 at the
update, and the gradient is the group-baseline policy gradient; μ > 1 reuses the batch and the
clip starts to bind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import trange


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """rewards [P, G] (G draws for each of P prompts) -> advantages [P, G], each row
    standardised by its own mean and standard deviation (ddof 0: a group of one gets 0)."""
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be [prompts, group], got shape {tuple(rewards.shape)}")
    mean = rewards.mean(1, keepdim=True)
    std = rewards.std(1, keepdim=True, correction=0)
    return (rewards - mean) / (std + eps)


def frac_reward_zero_std(rewards: torch.Tensor) -> float:
    """The share of groups (rows of rewards [P, G]) whose rewards are all equal."""
    return (rewards.std(1, correction=0) == 0).float().mean().item()


def candidate_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """Exact KL(π ‖ π_ref) over each row's candidates: log-probs [P, C] each -> [P]."""
    return (log_probs.exp() * (log_probs - ref_log_probs)).sum(1)


def k3_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """trl's per-sample KL estimate at actions drawn from π: exp(q − p) − (q − p) − 1, with p, q
    the log-probs of the drawn actions under π and π_ref (same shapes). Unbiased, ≥ 0."""
    delta = ref_log_probs - log_probs
    return delta.exp() - delta - 1


def grpo_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    ref_log_probs: torch.Tensor,
    *,
    clip: float = 0.2,
    kl_coef: float = 0.04,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's loss (module docstring) and its diagnostics.

    log_probs [P, C]: log π_θ over each prompt's candidates (with gradient); old_log_probs
    [P, G]: log π_old of the drawn actions; actions [P, G]: candidate indices; advantages
    [P, G]; ref_log_probs [P, C]: log π_ref over the candidates.
    """
    new = log_probs.gather(1, actions)
    ratio = (new - old_log_probs).exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
    policy_loss = -torch.min(unclipped, clipped).mean()
    kl = candidate_kl(log_probs, ref_log_probs).mean()
    loss = policy_loss + kl_coef * kl
    info = {
        "policy_loss": policy_loss.item(),
        "kl": kl.item(),
        "clip_fraction": ((ratio - 1).abs() > clip).float().mean().item(),
    }
    return loss, info


@dataclass
class GRPOConfig:
    """GRPO's settings; lesson 09 says which it changes and why."""

    steps: int = 20  # updates of the adapters
    prompts_per_step: int = 8  # P: session states per step
    group_size: int = 8  # G: recommendations drawn per prompt
    learning_rate: float = 1e-3  # AdamW on the LoRA adapters only
    clip: float = 0.2  # ε_c of the clipped ratio
    kl_coef: float = 0.04  # β (trl's former default)
    updates_per_batch: int = 1  # μ: gradient steps on each batch (trl's num_iterations)
    max_grad_norm: float = 1.0
    seed: int = 0  # the draws of recommendations


def train_grpo(
    recommender,
    sample_states: Callable[[int], object],
    reward: Callable[[object, torch.Tensor], torch.Tensor],
    config: GRPOConfig,
    *,
    evaluate: Callable[[], dict[str, float]] | None = None,
    evaluate_every: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Fine-tune the adapters of ``recommender`` (an :class:`~recrl_lib.agents.lm_policy.
    LMRecommender` whose model has LoRA adapters) with GRPO.

    ``sample_states(step)`` returns a batch of states with ``.obs`` (P rows);
    ``reward(states, items [P, G]) -> [P, G]`` scores drawn item ids. ``evaluate()``, if given,
    runs before the first step and every ``evaluate_every`` steps (and after the last), its
    numbers added to that step's row. Returns one row per step: reward, KL, diagnostics and the
    seconds spent in each part.
    """
    model = recommender.model
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has nothing to train: add LoRA adapters first (add_lora)")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    G, rows = config.group_size, []
    model.train()
    for step in trange(config.steps + 1, desc="GRPO", disable=not progress, leave=False):
        row: dict[str, float] = {"step": step}
        due = step == config.steps or (evaluate_every and step % evaluate_every == 0)
        if evaluate is not None and due:
            model.eval()
            row |= evaluate()
            model.train()
        if step == config.steps:  # a last row for the final evaluation only
            if evaluate is not None:
                rows.append(row)
            break
        clock = time.perf_counter()
        states = sample_states(step)
        obs = states.obs
        candidates = recommender.candidates(obs)
        prompts = recommender.prompts(obs)
        seconds = {"states and prompts": time.perf_counter() - clock}

        clock = time.perf_counter()
        with torch.no_grad(), recommender.reference():
            ref_log_probs = recommender.log_probs(obs, candidates, prompts)
        seconds["reference pass"] = time.perf_counter() - clock

        clock = time.perf_counter()
        log_probs = recommender.log_probs(obs, candidates, prompts)
        seconds["policy forward"] = time.perf_counter() - clock

        clock = time.perf_counter()
        probs = log_probs.detach().exp().cpu()
        draws = torch.multinomial(probs, G, replacement=True, generator=generator)  # [P, G]
        draws = draws.to(log_probs.device)
        rewards = reward(states, candidates.to(draws.device).gather(1, draws)).to(log_probs.device)
        advantages = group_advantages(rewards)
        old_log_probs = log_probs.detach().gather(1, draws)
        seconds["rewards"] = time.perf_counter() - clock

        clock = time.perf_counter()
        for update in range(config.updates_per_batch):
            if update > 0:
                log_probs = recommender.log_probs(obs, candidates, prompts)
            loss, info = grpo_loss(
                log_probs,
                old_log_probs,
                draws,
                advantages,
                ref_log_probs,
                clip=config.clip,
                kl_coef=config.kl_coef,
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
        seconds["backward and update"] = time.perf_counter() - clock

        row |= {
            "reward": rewards.mean().item(),
            "frac_reward_zero_std": frac_reward_zero_std(rewards),
            "loss": loss.item(),
            **info,
            **{f"seconds: {k}": v for k, v in seconds.items()},
            "seconds": sum(seconds.values()),
        }
        rows.append(row)
    model.eval()
    return pd.DataFrame(rows)
