"""Run policies on the batched simulator: whole sessions evaluated on-policy
(:func:`evaluate_policy`), and sessions logged by a stochastic policy with its propensities
(:func:`log_sessions`), the data of off-policy evaluation and learning."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from recrl_lib.agents.baselines import population_planner
from recrl_lib.agents.behaviour import StochasticPolicy
from recrl_lib.encoders.features import CatalogueStats
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


def split_users(n_users: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random half of the simulated users for tuning, the other half for claims:
    -> (tuning_users, evaluation_users), sorted long tensors that never share a user."""
    if n_users < 2:
        raise ValueError(f"split_users needs at least 2 users, got {n_users}")
    order = torch.randperm(n_users, generator=torch.Generator().manual_seed(seed))
    half = n_users // 2
    return order[:half].sort().values, order[half:].sort().values


def draw_users(pool: torch.Tensor, n: int, *, seed: int) -> torch.Tensor:
    """``n`` users drawn with replacement from ``pool`` ([P] long) with their own generator."""
    pick = torch.randint(len(pool), (n,), generator=torch.Generator().manual_seed(seed))
    return pool[pick]


def tune_rule(
    make_policy: Callable[..., Callable],
    grid: dict[str, list],
    sim: UserSimulator,
    *,
    users: torch.Tensor,
    seed: int,
) -> tuple[dict, pd.DataFrame]:
    """Grid search for a rule's settings by mean return on *tuning* users and seeds.

    ``make_policy(**settings)`` builds the rule; each combination of ``grid``'s values is run
    once on ``sim`` with ``users`` and ``seed`` (pass users and a seed that no claim uses).
    Returns (the best settings, a table of every combination's mean return, best first)."""
    if not grid or any(len(values) == 0 for values in grid.values()):
        raise ValueError("grid must name at least one setting, each with at least one value")
    tried = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    returns = [
        evaluate_policy(sim, make_policy(**settings), users=users, seed=seed)["return"].mean()
        for settings in tried
    ]
    table = pd.DataFrame(tried).assign(**{"return": returns})
    table = table.sort_values("return", ascending=False, kind="stable").reset_index(drop=True)
    return tried[int(np.argmax(returns))], table  # argmax: the first of any ties


PLANNER_GRID = {"min_rating": [1.0, 2.5, 3.0, 3.25, 3.5, 3.75], "recent_steps": [0, 1, 2, 3, 4]}


def tune_population_planner(
    stats: CatalogueStats,
    sim: UserSimulator,
    *,
    users: torch.Tensor,
    seed: int,
    grid: dict[str, list] | None = None,
) -> tuple[dict, pd.DataFrame]:
    """:func:`tune_rule` for :func:`population_planner` over ``grid`` (default
    ``PLANNER_GRID``: rating cut-offs from none to 3.75, and 0–4 recent genres avoided)."""
    return tune_rule(
        lambda **settings: population_planner(stats, **settings),
        PLANNER_GRID if grid is None else grid,
        sim,
        users=users,
        seed=seed,
    )
