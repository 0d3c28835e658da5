"""Feedback loops: a recommender retrained on the data it shaped (lesson 10).

Each round of :func:`run_feedback_loop` is

    serve (the recommender's policy) -> users respond (the simulator) -> append to the log
    -> retrain (``recommender.fit(log)``, on the whole log so far)

from a start of random exposure (Chaney, Stewart & Engelhardt 2018: start-up rounds of random
recommendations, then repeated retraining). The same users come back every round: their
hidden vectors, with the drift that their clicks caused, carry over (``new_session``).
:func:`round_measures` says what a round did to the catalogue and to users.

:func:`polya_urn` is the loop with a known answer: a recommender that shows items in
proportion to how often they were consumed, over items of equal quality, is a Pólya urn.
Start with one ball per item; draw a ball, put it back with one more of its colour. After T
draws the added balls K ~ Dirichlet-multinomial(T; 1, …, 1), so each item's share
S_i = (1 + K_i) / (n + T) has mean 1/n and

    Var S_i = T (n − 1) / (n² (n + 1) (n + T))  →  (n − 1) / (n² (n + 1))   as T → ∞,

the variance of one coordinate of the random limit Dirichlet(1, …, 1) (uniform on the
simplex): the winners are decided by early luck, not quality. Uniform exploration breaks the
loop: with ``explore = 1`` the shares are 1 + Multinomial(T, 1/n) over n + T and their
variance (n − 1) T / (n² (n + T)²) → 0.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from recrl_lib.agents.baselines import random_policy
from recrl_lib.agents.loop_recommenders import LoopLog, LoopRecommender
from recrl_lib.device import get_device
from recrl_lib.envs.simulator import SimulatorConfig, UserSimulator
from recrl_lib.envs.world import World
from recrl_lib.evaluation.ranking import gini, mean_pairwise_jaccard, mean_popularity

# --------------------------------------------------------------------------- the Pólya urn


def polya_urn(
    n_items: int,
    rounds: int,
    draws_per_round: int,
    *,
    explore: float = 0.0,
    consume_prob: float = 1.0,
    runs: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """The popularity loop over ``n_items`` items of equal quality, ``runs`` times at once.

    Each of ``rounds`` rounds shows ``draws_per_round`` items one after another: with
    probability ``explore`` a uniformly random item, else an item drawn in proportion to its
    count (1 pseudo-count each at the start). Every shown item is consumed with the same
    probability ``consume_prob`` and a consumed item's count grows by 1 at once (the classic
    urn; see the module docstring for its exact variance, :func:`polya_share_variance`).

    Returns the share trajectory [runs, rounds + 1, n_items] (row 0: the start, 1/n each);
    each row sums to 1.
    """
    for name, value, low in (("n_items", n_items, 2), ("rounds", rounds, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    for name, value in (("draws_per_round", draws_per_round), ("runs", runs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    for name, value in (("explore", explore), ("consume_prob", consume_prob)):
        if not 0 <= value <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    rng = np.random.default_rng(seed)
    counts = np.ones((runs, n_items))
    shares = np.empty((runs, rounds + 1, n_items))
    shares[:, 0] = 1 / n_items
    rows = np.arange(runs)
    for r in range(rounds):
        for _ in range(draws_per_round):
            cdf = np.cumsum(counts, axis=1) / counts.sum(1, keepdims=True)
            by_count = np.minimum((cdf < rng.random((runs, 1))).sum(1), n_items - 1)
            uniform = rng.integers(n_items, size=runs)
            item = np.where(rng.random(runs) < explore, uniform, by_count)
            counts[rows, item] += rng.random(runs) < consume_prob
        shares[:, r + 1] = counts / counts.sum(1, keepdims=True)
    return shares


def polya_share_variance(n_items: int, draws: int | None = None) -> float:
    """Var S_i of one item's share in the classic urn (one ball each at the start) after
    ``draws`` added balls: T (n − 1) / (n² (n + 1) (n + T)); ``None``: the Dirichlet(1, …, 1)
    limit (n − 1) / (n² (n + 1))."""
    n = n_items
    if n < 2 or (draws is not None and draws < 0):
        raise ValueError(f"need n_items >= 2 and draws >= 0 (or None), got {n_items}, {draws}")
    limit = (n - 1) / (n**2 * (n + 1))
    return limit if draws is None else limit * draws / (n + draws)


# --------------------------------------------------------------------------- measures


def round_measures(
    log: LoopLog,
    n_items: int,
    *,
    popularity: torch.Tensor | None = None,
    available: torch.Tensor | None = None,
) -> dict[str, float]:
    """What a slice of a loop's log (a round, a group's rows in it) did, as numbers.

    A session is one (round, user). Over the items ``available`` ([N] bool; default all):

    - ``gini_exposure`` / ``gini_consumption``: :func:`~recrl_lib.evaluation.ranking.gini` of
      how often each item was shown / clicked (NaN with nothing clicked);
    - ``coverage``: the share of available items shown at least once;
    - ``mean_popularity``: the mean ``popularity`` [N] of the items shown (give the
      recommender's training-split counts; NaN without);
    - ``jaccard``: :func:`~recrl_lib.evaluation.ranking.mean_pairwise_jaccard` of the clicked
      sets of the sessions with a click (NaN with fewer than 2 of them): how alike what users
      consumed is, not how often they clicked — a session without a click has nothing to
      compare;
    - ``clicks_per_session``; ``mean_rating``: the mean over sessions with a click of the
      session's mean rating of its clicks (NaN without a click);
    - ``sessions``, ``steps``, ``clicks``: the counts behind them.
    """
    if available is None:
        available = torch.ones(n_items, dtype=torch.bool)
    available = available.cpu()
    if available.shape != (n_items,) or available.dtype != torch.bool or not available.any():
        raise ValueError(f"available must be a [{n_items}] bool tensor with an item in it")
    nan = float("nan")
    log = log.to("cpu")
    key = log.round * (int(log.user.max()) + 1 if len(log) else 1) + log.user  # (round, user)
    sessions, session = torch.unique(key, return_inverse=True)
    n_sessions = len(sessions)
    shown = torch.bincount(log.item, minlength=n_items)[available]
    clicked = torch.bincount(log.item[log.click], minlength=n_items)[available]
    clicks = log.click.double()
    per_session_clicks = torch.zeros(n_sessions, dtype=torch.float64).index_add_(0, session, clicks)
    rating_sum = torch.zeros(n_sessions, dtype=torch.float64)
    rating_sum.index_add_(0, session, log.rating.double() * clicks)
    rated = per_session_clicks > 0
    session_rating = rating_sum[rated] / per_session_clicks[rated]
    consumed = torch.zeros(n_sessions, n_items, dtype=torch.bool)
    consumed[session[log.click], log.item[log.click]] = True
    return {
        "sessions": n_sessions,
        "steps": len(log),
        "clicks": int(log.click.sum()),
        "gini_exposure": gini(shown) if shown.sum() > 0 else nan,
        "gini_consumption": gini(clicked) if clicked.sum() > 0 else nan,
        "coverage": float((shown > 0).sum() / available.sum()),
        "mean_popularity": (
            mean_popularity(log.item, popularity) if popularity is not None and len(log) else nan
        ),
        "jaccard": (mean_pairwise_jaccard(consumed[rated]) if int(rated.sum()) >= 2 else nan),
        "clicks_per_session": float(clicks.sum() / n_sessions) if n_sessions else nan,
        "mean_rating": float(session_rating.mean()) if rated.any() else nan,
    }


# --------------------------------------------------------------------------- the loop


def _check_users(users, n_users: int) -> torch.Tensor:
    users = torch.as_tensor(users)
    if (
        users.dim() != 1
        or len(users) == 0
        or users.dtype.is_floating_point
        or users.dtype == torch.bool
        or users.min() < 0
        or users.max() >= n_users
    ):
        raise ValueError(
            f"users must be a non-empty 1-D tensor of user ids in 0..{n_users - 1} (e.g. the "
            f"evaluation half of split_users), got {tuple(users.shape)} {users.dtype}"
        )
    if len(users.unique()) != len(users):
        raise ValueError(
            "users must be distinct: each real user has one hidden state that carries over "
            "from round to round"
        )
    return users.long()


def _arrivals(new_items, n_items: int, rounds: int, session_len: int) -> torch.Tensor:
    if new_items is None:
        return torch.zeros(n_items, dtype=torch.long)
    arrival = torch.as_tensor(new_items)
    if arrival.shape != (n_items,) or arrival.dtype.is_floating_point or (arrival < 0).any():
        raise ValueError(
            f"new_items must be [{n_items}] round numbers >= 0 (item i joins the catalogue at "
            f"round new_items[i]; 0 = from the start), got {tuple(arrival.shape)} {arrival.dtype}"
        )
    fewest = min(int((arrival <= r).sum()) for r in range(rounds))
    if fewest < session_len:
        raise ValueError(
            f"a round has only {fewest} items available, fewer than session_len={session_len}: "
            "let more items in from the start"
        )
    return arrival.long()


def run_feedback_loop(
    world: World,
    recommender: LoopRecommender,
    *,
    users: torch.Tensor,
    rounds: int,
    startup_rounds: int = 1,
    session_len: int = 10,
    seed: int = 0,
    config: SimulatorConfig | None = None,
    popularity: torch.Tensor | None = None,
    group: torch.Tensor | None = None,
    new_items: torch.Tensor | None = None,
    exclude_consumed: bool = False,
    exploit_last: bool = False,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> tuple[pd.DataFrame, LoopLog]:
    """Run ``rounds`` rounds of serve -> respond -> log -> retrain (module docstring).

    - ``users`` [U] long: the distinct real users who come back every round; round 0 resets
      the simulator with them, later rounds start new sessions of the same users (hidden
      vector and drift carry over; budget and satiation reset).
    - the first ``startup_rounds`` rounds serve uniformly random items (Chaney et al.'s
      start-up); every later round first calls ``recommender.fit(log)`` on the whole log so
      far, then serves ``recommender.policy()``. An oracle recommender (``oracle=True``) gets
      the simulator through ``attach(sim)``; no other does.
    - a session runs ``session_len`` steps, or until the user's budget runs out; an item is
      shown at most once a session.
    - ``config``: the simulator's settings (``horizon`` becomes ``session_len`` and
      ``observe_user`` True: the recommender knows its returning users).
    - ``popularity`` [N]: the recommender's training-split counts, for ``mean_popularity``
      (not ``world.popularity``: that counts all ratings, hidden).
    - ``group`` [n_users] bool over the world's users (e.g. a minority group): its measures
      get rows of their own.
    - ``new_items`` [N] long: the round in which each item joins the catalogue (0 = from the
      start); before it, no one may be shown it.
    - ``exclude_consumed``: an item a user clicked in an earlier round is not shown to that user
      again (a user consumes a movie once, as in Chaney et al.; the recommender knows it from
      its own log).
    - ``exploit_last``: the last round serves each recommender's greedy policy
      (``greedy_policy()``, where it has one: an exploring recommender without its exploration),
      fitted on its own log — whether what exploring taught pays; its phase is "exploit".

    Same arguments, seed and a fresh recommender: the same run. Returns (a table with one row
    per round and population — ``round``, ``phase`` ("startup" or "retrain"), ``users`` ("all"
    or "group"), ``recommender``, ``seed`` and :func:`round_measures` over the items available
    that round —,
    the whole :class:`LoopLog`).
    """
    if not isinstance(recommender, LoopRecommender):
        raise TypeError(
            f"recommender must have name, oracle, fit(log) and policy() (a LoopRecommender), "
            f"got {type(recommender).__name__}"
        )
    for name, value, low in (("rounds", rounds, 1), ("session_len", session_len, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not 0 <= startup_rounds <= rounds:
        raise ValueError(f"startup_rounds must be in 0..rounds={rounds}, got {startup_rounds}")
    n_items = world.n_items
    if getattr(recommender, "n_items", n_items) != n_items:
        raise ValueError(f"the recommender ranks {recommender.n_items} items, the world {n_items}")
    users = _check_users(users, world.n_users)
    arrival = _arrivals(new_items, n_items, rounds, session_len)
    if popularity is not None and popularity.shape != (n_items,):
        raise ValueError(f"popularity must be [{n_items}] (training-split counts per item)")
    if group is not None:
        group = torch.as_tensor(group).cpu()
        if group.shape != (world.n_users,) or group.dtype != torch.bool:
            raise ValueError(f"group must be a [{world.n_users}] bool mask over the world's users")
        if not group[users].any():
            raise ValueError("no user of the loop is in the group")

    device = torch.device(device) if device is not None else get_device()
    # Separate streams for the simulator and the start-up recommendations, derived from seed.
    sim_seed, startup_seed = torch.randint(
        2**62, (2,), generator=torch.Generator().manual_seed(seed)
    ).tolist()
    config = replace(config or SimulatorConfig(), horizon=session_len, observe_user=True)
    sim = UserSimulator(world, config, batch_size=len(users), seed=sim_seed, device=device)
    if recommender.oracle:
        if not hasattr(recommender, "attach"):
            raise TypeError("an oracle recommender needs attach(sim) to read the hidden state")
        recommender.attach(sim)
    startup = random_policy(n_items, seed=startup_seed)
    users_dev = users.to(device)
    B, rows_of = len(users), torch.arange(len(users), device=device)

    log, table = LoopLog.empty(device), []
    consumed = torch.zeros(B, n_items, dtype=torch.bool, device=device)  # clicked before
    for r in tqdm(range(rounds), desc="rounds", disable=not progress):
        exploit = exploit_last and r == rounds - 1 and r >= startup_rounds
        if r < startup_rounds:
            policy = startup
        else:
            recommender.fit(log)
            serve = getattr(recommender, "greedy_policy", None) if exploit else None
            policy = serve() if serve is not None else recommender.policy()
        available = (arrival <= r).to(device)
        obs = sim.reset(users=users_dev) if r == 0 else sim.new_session()
        alive = torch.ones(B, dtype=torch.bool, device=device)
        shown = torch.zeros(B, n_items, dtype=torch.bool, device=device)
        served = []
        for t in range(session_len):
            with torch.no_grad():
                scores = policy.masked_scores(obs).to(device)
            hidden_now = shown | ~available | (consumed if exclude_consumed else False)
            scores = scores.masked_fill(hidden_now, -float("inf"))
            actions = scores.argmax(1)
            obs, reward, terminated, truncated, info = sim.step(actions, active=alive)
            n = int(alive.sum())
            step_log = LoopLog(
                round=torch.full((n,), r, device=device),
                user=users_dev[alive],
                step=torch.full((n,), t, device=device),
                item=actions[alive],
                click=reward[alive] > 0,
                rating=info["rating"][alive].float(),
            )
            served.append(step_log)
            shown[rows_of, actions] = True
            consumed[rows_of[alive], actions[alive]] |= reward[alive] > 0
            alive = alive & ~(terminated | truncated)
            if not alive.any():
                break
        round_log = LoopLog.concat(served)
        log = log.extend(round_log)
        phase = "startup" if r < startup_rounds else ("exploit" if exploit else "retrain")
        populations = {"all": round_log}
        if group is not None:
            populations["group"] = round_log.select(group.to(device)[round_log.user])
        for who, part in populations.items():
            measures = round_measures(
                part, n_items, popularity=popularity, available=available.cpu()
            )
            table.append(
                {"round": r, "phase": phase, "users": who, "recommender": recommender.name}
                | {"seed": seed}
                | measures
            )
    return pd.DataFrame(table), log


# --------------------------------------------------------------------------- who, and per user


def far_from_mean(
    vectors: torch.Tensor, *, quantile: float = 0.75, strata: torch.Tensor | None = None
) -> torch.Tensor:
    """[U] bool: the rows of ``vectors`` [U, D] whose *direction* is furthest from the average
    direction (cosine distance above its ``quantile``) — with the recommender's MF user vectors
    (training split), the users whose taste is unusual: a minority the data defines, not a
    hidden label. Directions, not the vectors themselves, whose length grows with how much a
    user rated. ``strata`` [U] long (e.g. bins of how many ratings each user has) takes the
    quantile within each stratum, so that the group is as active as everyone else and "unusual
    taste" is not "rated a lot" (or "rated little") in disguise."""
    if vectors.dim() != 2 or len(vectors) < 2:
        raise ValueError(f"vectors must be [U, D] with U >= 2, got {tuple(vectors.shape)}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    unit = torch.nn.functional.normalize(vectors.detach().double().cpu(), dim=1)
    centre = torch.nn.functional.normalize(unit.mean(0), dim=0)
    distance = 1 - unit @ centre  # cosine distance to the average direction
    if strata is None:
        strata = torch.zeros(len(vectors), dtype=torch.long)
    strata = torch.as_tensor(strata).cpu()
    if strata.shape != (len(vectors),):
        raise ValueError(f"strata must be [U] = [{len(vectors)}], got {tuple(strata.shape)}")
    group = torch.zeros(len(vectors), dtype=torch.bool)
    for stratum in strata.unique():
        rows = strata == stratum
        group[rows] = distance[rows] > distance[rows].quantile(quantile)
    return group


def clicks_by_user(log: LoopLog, users: torch.Tensor, rounds: int) -> torch.Tensor:
    """[U, rounds]: the clicks of each of ``users`` [U] (the loop's users, in its order) in each
    round of ``log`` — what pairs two recommenders' runs on the same users."""
    log = log.to("cpu")
    users = torch.as_tensor(users).cpu()
    row = torch.full((int(max(users.max(), log.user.max() if len(log) else 0)) + 1,), -1)
    row[users] = torch.arange(len(users))
    if len(log) and ((row[log.user] < 0).any() or log.round.max() >= rounds):
        raise ValueError("the log holds users or rounds outside users / rounds")
    table = torch.zeros(len(users) * rounds, dtype=torch.float64)
    table.index_add_(0, row[log.user] * rounds + log.round, log.click.double())
    return table.view(len(users), rounds)
