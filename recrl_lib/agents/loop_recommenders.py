"""Recommenders that a feedback loop retrains on its own log (lesson 10).

A deployed recommender is refitted on the log of what it showed and what users did with it, so
it shapes the data it learns from. :class:`LoopLog` is that log, one row per step shown; a
*loop recommender* is anything with

    name: str, oracle: bool
    fit(log: LoopLog) -> None     retrain on the whole log so far
    policy() -> Policy            serve: score(obs) -> [B, N], best valid item

(:func:`recrl_lib.evaluation.run_feedback_loop` calls ``fit`` then ``policy`` before each
round). Non-oracles learn only from the log and what the recommender computed from the
training split (its counts, its MF, the item text vectors):

- :class:`RandomRecommender`: uniform over valid items;
- :class:`PopularityRecommender`: most clicked in the log (+ the training-split counts);
- :class:`MFLoopRecommender`: the recommender's BPR factorisation retrained on the log's
  clicks, greedy or ε-greedy;
- :class:`BanditRecommender`: a contextual linear bandit (:mod:`~recrl_lib.agents.bandits`:
  LinUCB, linear Thompson sampling, ε-greedy) refitted on the log's (user, item, click);
- :class:`StaticRecommender`: any fixed :class:`Policy` (never retrained), for comparison.

:class:`OracleRecommender` (``oracle=True``) reads the simulator's hidden state on purpose: the
loop hands it the simulator through ``attach(sim)``, and hands it to no one else.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

import pandas as pd
import torch

from recrl_lib.agents.bandits import LinearBandit, explore_scores
from recrl_lib.agents.baselines import (
    DeviceGenerators,
    Observation,
    Policy,
    mf_recommender,
    random_policy,
)
from recrl_lib.encoders.mf import MatrixFactorization, fit_bpr
from recrl_lib.envs.simulator import UserSimulator


@dataclass
class LoopLog:
    """Every step a feedback loop served, one row each, [M] per field (one device)."""

    round: torch.Tensor  # long: the round (0 = the first)
    user: torch.Tensor  # long: the world's user id
    step: torch.Tensor  # long: the step in the user's session (0 = the first)
    item: torch.Tensor  # long: the item shown
    click: torch.Tensor  # bool: the user clicked it
    rating: torch.Tensor  # float: 1..5 for a click, 0 otherwise

    def __post_init__(self):
        m = self.round.shape
        for f in fields(self):
            value = getattr(self, f.name)
            if not torch.is_tensor(value) or value.dim() != 1 or value.shape != m:
                raise ValueError(f"every LoopLog field must be a 1-D tensor of one length {m}")
        if self.click.dtype != torch.bool:
            raise ValueError(f"LoopLog.click must be bool, got {self.click.dtype}")

    @staticmethod
    def empty(device: torch.device | str = "cpu") -> LoopLog:
        def long():
            return torch.zeros(0, dtype=torch.long, device=device)

        return LoopLog(
            long(),
            long(),
            long(),
            long(),
            torch.zeros(0, dtype=torch.bool, device=device),
            torch.zeros(0, device=device),
        )

    def __len__(self) -> int:
        return len(self.round)

    @property
    def device(self) -> torch.device:
        return self.round.device

    def _map(self, fn) -> LoopLog:
        return LoopLog(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    @staticmethod
    def concat(logs: list[LoopLog]) -> LoopLog:
        """The logs' rows one after another (a new log)."""
        if not logs:
            raise ValueError("concat needs at least one log")
        names = [f.name for f in fields(LoopLog)]
        return LoopLog(**{n: torch.cat([getattr(log, n) for log in logs]) for n in names})

    def extend(self, other: LoopLog) -> LoopLog:
        """This log followed by ``other``'s rows (a new log)."""
        return LoopLog.concat([self, other])

    def select(self, rows: torch.Tensor) -> LoopLog:
        """The rows where ``rows`` ([M] bool) is True, or at ``rows`` (long indices)."""
        return self._map(lambda t: t[rows.to(t.device)])

    def in_round(self, r: int) -> LoopLog:
        return self.select(self.round == r)

    def to(self, device) -> LoopLog:
        return self._map(lambda t: t.to(device))

    def equals(self, other: LoopLog) -> bool:
        """Row for row the same log."""
        return all(
            torch.equal(getattr(self, f.name).cpu(), getattr(other, f.name).cpu())
            for f in fields(self)
        )

    def to_frame(self) -> pd.DataFrame:
        """The log as a table, one row per step."""
        return pd.DataFrame({f.name: getattr(self, f.name).cpu().numpy() for f in fields(self)})


@runtime_checkable
class LoopRecommender(Protocol):
    """What a feedback loop needs of a recommender (module docstring)."""

    name: str
    oracle: bool

    def fit(self, log: LoopLog) -> None: ...

    def policy(self) -> Policy: ...


class RandomRecommender:
    """Uniform over valid items; learns nothing (Chaney et al.'s "random" recommender). One
    generator for the whole run: make a fresh recommender to repeat a run."""

    oracle = False

    def __init__(self, n_items: int, *, seed: int = 0):
        self.name, self.n_items = "random", n_items
        self._policy = random_policy(n_items, seed=seed)

    def fit(self, log: LoopLog) -> None:
        pass

    def policy(self) -> Policy:
        return self._policy


class PopularityRecommender:
    """Most popular: score_i = (clicks on i in the log) + ``prior_weight`` · ``prior_counts``_i
    (the training split's rating counts, if given). The same list for everyone; ties go to the
    lower item id. Without a prior it is a pure feedback loop: what was clicked is shown."""

    oracle = False

    def __init__(
        self,
        n_items: int,
        *,
        prior_counts: torch.Tensor | None = None,
        prior_weight: float = 1.0,
    ):
        if prior_counts is not None and (
            prior_counts.shape != (n_items,) or (prior_counts < 0).any()
        ):
            raise ValueError(f"prior_counts must be [{n_items}] counts >= 0")
        if prior_weight < 0:
            raise ValueError(f"prior_weight must be >= 0, got {prior_weight}")
        self.name, self.n_items = "most popular", n_items
        prior = torch.zeros(n_items) if prior_counts is None else prior_counts.float().cpu()
        self.prior = prior_weight * prior
        self.counts = self.prior.clone()

    def fit(self, log: LoopLog) -> None:
        clicked = log.item[log.click].cpu()
        self.counts = self.prior + torch.bincount(clicked, minlength=self.n_items).float()

    def policy(self) -> Policy:
        # Score = N − rank in a stable sort by count: distinct scores, ties to the lower id (so
        # argmax and top-k agree).
        order = torch.argsort(self.counts, descending=True, stable=True)
        rank_score = torch.empty(self.n_items).index_copy_(
            0, order, torch.arange(self.n_items, 0, -1).float()
        )

        def score(obs: Observation) -> torch.Tensor:
            return rank_score.to(obs["items"].device).expand(obs["items"].shape[0], -1)

        return Policy(self.name, score, self.n_items)


class MFLoopRecommender:
    """The recommender's matrix factorisation retrained on the log's clicks; greedy, or with
    probability ``epsilon`` a uniformly random valid item (ε-greedy).

    Each fit starts again from ``mf`` (the factorisation of the training split, e.g.
    :func:`~recrl_lib.encoders.fit_recommender_mf`; never modified) and runs ``epochs`` BPR
    epochs over every click in the log so far (positives (user, item); negatives uniform over
    the catalogue). So the model is a function of the log alone — fitting twice gives the same
    model — and the training split stays its starting point rather than being forgotten.
    """

    oracle = False

    def __init__(
        self,
        mf: MatrixFactorization,
        *,
        epsilon: float = 0.0,
        epochs: int = 5,
        lr: float = 0.01,
        l2: float = 1e-4,
        seed: int = 0,
    ):
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self.initial, self.mf = mf, mf
        self.epsilon, self.epochs, self.lr, self.l2, self.seed = epsilon, epochs, lr, l2, seed
        self.n_items = mf.items.n_items
        self.name = "MF (greedy)" if epsilon == 0 else f"MF ε-greedy (ε = {epsilon:g})"
        self._generators = DeviceGenerators(seed)

    def fit(self, log: LoopLog) -> None:
        model = copy.deepcopy(self.initial)
        users, items = log.user[log.click], log.item[log.click]
        if len(users) and users.max() >= model.users.num_embeddings:
            raise ValueError(
                f"the log has user {int(users.max())}, the MF knows {model.users.num_embeddings}"
            )
        if len(users) and self.epochs:
            fit_bpr(
                model,
                users,
                items,
                epochs=self.epochs,
                lr=self.lr,
                l2=self.l2,
                seed=self.seed,
                progress=False,
            )
        self.mf = model

    def greedy_policy(self) -> Policy:
        """The fitted model without its exploration."""
        return Policy(f"{self.name}, greedy", mf_recommender(self.mf).score, self.n_items)

    def policy(self) -> Policy:
        greedy = mf_recommender(self.mf)
        if self.epsilon == 0:
            return Policy(self.name, greedy.score, self.n_items)

        def score(obs: Observation) -> torch.Tensor:
            scores = greedy.score(obs)
            return explore_scores(scores, self.epsilon, self._generators(scores.device))

        return Policy(self.name, score, self.n_items)


class BanditRecommender:
    """A :class:`~recrl_lib.agents.bandits.LinearBandit` in the loop: each fit forgets and
    refits it on every (user, item shown, click) of the log, the reward being the click."""

    oracle = False

    def __init__(self, bandit: LinearBandit):
        self.bandit, self.name, self.n_items = bandit, bandit.name, bandit.n_items

    def fit(self, log: LoopLog) -> None:
        self.bandit.reset()
        self.bandit.update(log.user, log.item, log.click.float())

    def policy(self) -> Policy:
        return self.bandit.policy()

    def greedy_policy(self) -> Policy:
        return self.bandit.greedy_policy()


class StaticRecommender:
    """A fixed non-oracle :class:`Policy` (e.g. ``most_popular(stats)`` or a trained agent's
    greedy policy) that the loop never retrains: the no-feedback reference."""

    oracle = False

    def __init__(self, policy: Policy):
        if getattr(policy, "oracle", False):
            raise ValueError("an oracle policy reads its own simulator: use OracleRecommender")
        self._policy, self.name, self.n_items = policy, policy.name, policy.n_items

    def fit(self, log: LoopLog) -> None:
        pass

    def policy(self) -> Policy:
        return self._policy


class OracleRecommender:
    """ORACLE: the valid item the user likes best *now*, read from the simulator's hidden
    state — ``target="affinity"``: the hidden affinity p_u·q_i + b_i (with the drift so far;
    Chaney et al.'s "ideal" recommender, the reference of homogenisation), or ``"click"``: the
    click probability (affinity, clickbait appeal and satiation; the greedy oracle).
    The loop attaches its simulator with :meth:`attach`; nothing is learned from the log."""

    oracle = True

    def __init__(self, n_items: int, *, target: str = "affinity"):
        if target not in ("affinity", "click"):
            raise ValueError(f"target must be 'affinity' or 'click', got {target!r}")
        self.n_items, self.target, self.sim = n_items, target, None
        self.name = f"oracle ({target})"

    def attach(self, sim: UserSimulator) -> None:
        if sim.world.n_items != self.n_items:
            raise ValueError(f"the simulator has {sim.world.n_items} items, not {self.n_items}")
        self.sim = sim

    def fit(self, log: LoopLog) -> None:
        pass

    def policy(self) -> Policy:
        sim = self.sim
        if sim is None:
            raise ValueError("attach(sim) first: the oracle reads the simulator's hidden state")

        def score(obs: Observation) -> torch.Tensor:
            if self.target == "click":
                return sim.click_probabilities()
            return sim.world.affinity_all(sim.user_vectors)

        return Policy(self.name, score, self.n_items, oracle=True)
