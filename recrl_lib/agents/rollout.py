"""Run a policy for whole sessions on the batched simulator and collect per-session results."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

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
