"""Run policies on the batched simulator: whole sessions evaluated on-policy
(:func:`evaluate_policy`), and sessions logged by a stochastic policy with its propensities
(:func:`log_sessions`), the data of off-policy evaluation and learning."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from recrl_lib.agents.behaviour import StochasticPolicy
from recrl_lib.envs.simulator import UserSimulator


@torch.no_grad()
def evaluate_policy(
    sim: UserSimulator,
    policy: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    *,
    n_rounds: int = 1,
    seed: int = 0,
    users: torch.Tensor | None = None,
) -> pd.DataFrame:
    """Run ``n_rounds`` × ``sim.batch_size`` sessions of ``policy(obs) -> actions [B]``.

    Every session starts fresh and runs until it ends. ``users`` ([B]) fixes who is simulated
    (default: drawn at random); with the same ``users`` and ``seed``, two policies meet the
    same users and the same random numbers for as long as their actions agree, so their
    results pair up row by row. Returns one row per session: ``user``, ``round``, ``return``
    (clicks), ``length`` (steps), ``mean_rating`` (of clicked items; NaN without a click),
    ``clickbait`` (share of the session's recommendations that were clickbait: a diagnostic
    read from the world).
    """
    rows = []
    for round_ in range(n_rounds):
        obs = sim.reset(seed=seed * 1_000_003 + round_, users=users)
        total = torch.zeros(sim.batch_size, device=sim.device)
        length = torch.zeros_like(total)
        rating_sum = torch.zeros_like(total)
        bait = torch.zeros_like(total)
        alive = torch.ones(sim.batch_size, dtype=torch.bool, device=sim.device)
        while alive.any():
            actions = policy(obs)
            shown_bait = sim.world.clickbait[actions].float().view(sim.batch_size, -1).mean(1)
            bait += shown_bait * alive
            obs, reward, terminated, truncated, info = sim.step(actions)
            total += reward * alive
            length += alive.float()
            rating_sum += info["rating"] * alive
            alive &= ~(terminated | truncated)
        rows.append(
            pd.DataFrame(
                {
                    "user": sim.user_ids.cpu().numpy(),
                    "round": round_,
                    "return": total.cpu().numpy(),
                    "length": length.cpu().numpy(),
                    "mean_rating": torch.where(total > 0, rating_sum / total, torch.nan)
                    .cpu()
                    .numpy(),
                    "clickbait": (bait / length).cpu().numpy(),
                }
            )
        )
    return pd.concat(rows, ignore_index=True).astype({"length": np.int64})


@torch.no_grad()
def log_sessions(
    sim: UserSimulator,
    behaviour: StochasticPolicy,
    *,
    target: StochasticPolicy | None = None,
    horizon: int | None = None,
    users: torch.Tensor | None = None,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """``sim.batch_size`` sessions written by ``behaviour``, as a production log records them.

    Each session runs for ``horizon`` steps at most (default: the simulator's). Returns, each
    [B, T]: ``actions`` (long), ``rewards`` (clicks; 0 after the session ended), ``ratings``
    (1..5 of a clicked item, else 0), ``alive``
    (bool: the step happened), ``behaviour_p`` (β(a_t|s_t), recorded when the item was drawn;
    1 after the end) and, given a ``target``, ``target_p`` (π(a_t|s_t) for the same item at the
    same logged state; 1 after the end): what off-policy estimators read.
    """
    T = sim.config.horizon if horizon is None else horizon
    if not 1 <= T <= sim.config.horizon:
        raise ValueError(f"horizon must be in 1..{sim.config.horizon}, got {horizon}")
    obs = sim.reset(seed=seed, users=users)
    B = sim.batch_size
    log = {
        "actions": torch.zeros(B, T, dtype=torch.long, device=sim.device),
        "rewards": torch.zeros(B, T, device=sim.device),
        "alive": torch.zeros(B, T, dtype=torch.bool, device=sim.device),
        "ratings": torch.zeros(B, T, device=sim.device),
        "behaviour_p": torch.ones(B, T, device=sim.device),
    }
    if target is not None:
        log["target_p"] = torch.ones(B, T, device=sim.device)
    alive = torch.ones(B, dtype=torch.bool, device=sim.device)
    for t in range(T):
        actions, propensity = behaviour.sample(obs)
        log["actions"][:, t], log["alive"][:, t] = actions, alive
        log["behaviour_p"][:, t] = torch.where(alive, propensity, 1.0)
        if target is not None:
            target_p = target.probs(obs).gather(1, actions[:, None])[:, 0]
            log["target_p"][:, t] = torch.where(alive, target_p, 1.0)
        obs, reward, terminated, truncated, info = sim.step(actions)
        log["rewards"][:, t] = reward * alive
        log["ratings"][:, t] = info["rating"] * alive
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    return log
