"""Run a policy for whole sessions on the batched simulator and collect per-session returns."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from recrl_lib.envs.simulator import UserSimulator


@torch.no_grad()
def evaluate_policy(
    sim: UserSimulator,
    policy: Callable,
    *,
    n_rounds: int = 1,
    seed: int = 0,
    users: torch.Tensor | None = None,
) -> pd.DataFrame:
    """Run ``n_rounds`` × ``sim.batch_size`` sessions of ``policy(sim, obs) -> actions``.

    Every session starts fresh and runs until it terminates or is truncated. ``users`` ([B])
    fixes who is simulated (default: drawn at random). Returns one row per session:
    ``return`` (clicks), ``length`` (steps), ``mean_rating`` (of clicked items),
    ``clickbait`` (share of the session's recommendations that were clickbait).
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
            actions = policy(sim, obs)
            bait += sim.world.clickbait[actions].float().view(sim.batch_size, -1).mean(1) * alive
            obs, reward, terminated, truncated, info = sim.step(actions)
            total += reward * alive
            length += alive.float()
            rating_sum += info["rating"] * alive
            alive &= ~(terminated | truncated)
        rows.append(
            pd.DataFrame(
                {
                    "return": total.cpu().numpy(),
                    "length": length.cpu().numpy(),
                    "mean_rating": (rating_sum / total.clamp(min=1)).cpu().numpy(),
                    "clickbait": (bait / length).cpu().numpy(),
                    "round": round_,
                }
            )
        )
    return pd.concat(rows, ignore_index=True).astype({"length": np.int64})
