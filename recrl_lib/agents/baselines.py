"""One protocol for every policy in the course, and the non-learning policies.

A :class:`Policy` scores every item for a batch of observations, ``score(obs) -> [B, N]``, and
shows the best *valid* item: one not already in the observed session log (every policy knows
the log, the same way) and, optionally, inside an ``allowed`` set. ``policy(obs)`` returns the
actions [B]; ``policy.rank(obs, k)`` the top-k valid items [B, k] for offline metrics.
(Stochastic policies, which also say their probabilities, are in
:mod:`~recrl_lib.agents.behaviour`.)

What a policy may see is part of its definition:

- **non-oracle** policies act on the observation and on what the recommender computed from the
  training split (:class:`~recrl_lib.encoders.CatalogueStats`, item features, its own models):
  ``random_policy``, ``most_popular``, ``population_planner``, ``mf_recommender`` (the
  classic personalised recommender: its own factorisation of the training split, read for
  the logged-in user), and every learned agent;
- **oracles** are built *with the simulator* and read its hidden state on purpose, to show what
  that information is worth: ``greedy_oracle`` (the highest click probability now) and
  ``oracle_planner`` (click probability + λ · expected budget change, a one-step look-ahead).
  They carry ``oracle=True``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from recrl_lib.agents.session import user_rows
from recrl_lib.encoders.features import CatalogueStats
from recrl_lib.encoders.mf import MatrixFactorization
from recrl_lib.envs.simulator import UserSimulator, shown_items

Observation = dict[str, torch.Tensor]


class Policy:
    """A named scoring rule over ``n_items`` items; see the module docstring."""

    def __init__(
        self,
        name: str,
        score: Callable[[Observation], torch.Tensor],
        n_items: int,
        *,
        oracle: bool = False,
        allowed: torch.Tensor | None = None,
        valid: Callable[[Observation], torch.Tensor] | None = None,
    ):
        if allowed is not None and (allowed.shape != (n_items,) or allowed.dtype != torch.bool):
            got = f"{allowed.dtype} {tuple(allowed.shape)}"
            raise ValueError(f"allowed must be a [{n_items}] bool tensor, got {got}")
        if allowed is not None and not allowed.any():
            raise ValueError("allowed must let at least one item through")
        self.name, self.score, self.n_items = name, score, n_items
        self.oracle, self.allowed, self._valid = oracle, allowed, valid

    def __repr__(self) -> str:
        return f"Policy({self.name!r}{', oracle' if self.oracle else ''})"

    def valid(self, obs: Observation) -> torch.Tensor:
        """[B, N] bool: allowed items not in the observed session log (or the rule given as
        ``valid``, e.g. a learned agent's own)."""
        if self._valid is not None:
            return self._valid(obs)
        valid = ~shown_items(obs, self.n_items)
        if self.allowed is not None:
            valid &= self.allowed.to(valid.device)
        return valid

    def masked_scores(self, obs: Observation) -> torch.Tensor:
        """[B, N]: the scores with invalid items at −inf."""
        return self.score(obs).masked_fill(~self.valid(obs), -float("inf"))

    @torch.no_grad()
    def __call__(self, obs: Observation) -> torch.Tensor:
        """The best valid item of each row -> [B] long."""
        return self.masked_scores(obs).argmax(1)

    @torch.no_grad()
    def rank(self, obs: Observation, k: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """The k best valid items of each row, best first -> [B, k] long; ``exclude`` [B, N]
        bool removes more items (e.g. those the user rated in the training split)."""
        scores = self.masked_scores(obs)
        if exclude is not None:
            scores = scores.masked_fill(exclude.to(scores.device), -float("inf"))
        return scores.topk(k, dim=1).indices


def _batch_size(obs: Observation) -> int:
    return obs["items"].shape[0]


class DeviceGenerators:
    """One random generator per device type, seeded with ``seed`` when first used there: a
    policy's own stream, wherever its inputs live."""

    def __init__(self, seed: int):
        self.seed, self._by_device = seed, {}

    def __call__(self, device: torch.device) -> torch.Generator:
        if device.type not in self._by_device:
            self._by_device[device.type] = torch.Generator(device=device).manual_seed(self.seed)
        return self._by_device[device.type]


def random_policy(n_items: int, *, seed: int = 0, allowed: torch.Tensor | None = None) -> Policy:
    """Uniform over valid items, from its own generator seeded with ``seed``."""
    generator = DeviceGenerators(seed)

    def score(obs: Observation) -> torch.Tensor:
        device = obs["items"].device
        shape = (_batch_size(obs), n_items)
        return torch.rand(shape, generator=generator(device), device=device)

    return Policy("random", score, n_items, allowed=allowed)


def most_popular(stats: CatalogueStats) -> Policy:
    """The most-rated valid item in the training split."""
    count = stats.count

    def score(obs: Observation) -> torch.Tensor:
        return count.to(obs["items"].device).expand(_batch_size(obs), -1)

    return Policy("most popular", score, stats.n_items)


def population_planner(
    stats: CatalogueStats, *, min_rating: float = 3.2, recent_steps: int = 2
) -> Policy:
    """A hand-written rule with no user model: popular items, skipping those whose (shrunk)
    mean training rating is below ``min_rating`` and, where possible, the genres of the last
    ``recent_steps`` items shown (read from the observation)."""
    if recent_steps < 0:
        raise ValueError(f"recent_steps must be >= 0 (0: no genre rotation), got {recent_steps}")
    genres, count = stats.genres.float(), stats.count
    poor = (stats.mean_rating < min_rating).float()

    def score(obs: Observation) -> torch.Tensor:
        device = obs["items"].device
        score = count.to(device).expand(_batch_size(obs), -1).clone()
        score -= 1e6 * poor.to(device)  # skip poorly rated items ...
        if recent_steps == 0:  # (``[:, -0:]`` would be every step, not none)
            return score
        g = genres.to(device)
        recent = obs["items"][:, -recent_steps:]
        recent_mask = obs["mask"][:, -recent_steps:, None].float()
        recent_genres = (g[recent] * recent_mask).amax(1)  # [B, G]
        repeats_genre = (recent_genres @ g.T) > 0  # [B, N]
        score -= 1e3 * repeats_genre.float()  # ... and recent genres, when possible
        return score

    return Policy("population planner", score, stats.n_items)


def mf_recommender(mf: MatrixFactorization) -> Policy:
    """The recommender's MF score of each valid item for the logged-in user, greedy: the
    classic personalised recommender. Needs ``SimulatorConfig(observe_user=True)``; an
    unknown user (id -1) gets the item biases alone."""
    scores = mf.score_all().detach().cpu()  # [U, N], from the training split
    scores = torch.cat([scores, mf.item_bias.detach().cpu()[None]])  # last row: unknown

    def score(obs: Observation) -> torch.Tensor:
        return scores[user_rows(obs, len(scores) - 1).cpu()].to(obs["items"].device)

    return Policy("MF recommender", score, mf.items.n_items)


def greedy_oracle(sim: UserSimulator) -> Policy:
    """ORACLE: the valid item with the highest click probability now (reads ``sim``'s hidden
    state; ``sim`` must be the simulator whose observations the policy receives)."""
    return Policy(
        "greedy-oracle", lambda obs: sim.click_probabilities(), sim.world.n_items, oracle=True
    )


def oracle_planner(sim: UserSimulator, lam: float = 0.5) -> Policy:
    """ORACLE: P(click) + ``lam`` · E[budget change], both from ``sim``'s hidden state."""

    def score(obs: Observation) -> torch.Tensor:
        return sim.click_probabilities() + lam * sim.expected_budget_change()

    return Policy(f"oracle planner (λ = {lam})", score, sim.world.n_items, oracle=True)


def click_through_recommender(
    shown: torch.Tensor, clicked: torch.Tensor, n_items: int, *, prior_shows: float = 5.0
) -> Policy:
    """Rank items by their click-through rate in the recommender's own log: ``shown`` [M] item
    ids, ``clicked`` [M] 0/1, each item's rate shrunk toward the log's overall rate with
    ``prior_shows`` pseudo-shows. What a retriever tuned for clicks learns: clickbait included."""
    if shown.shape != clicked.shape or shown.ndim != 1 or len(shown) == 0:
        raise ValueError("shown and clicked must be non-empty [M] tensors of the same shape")
    shows = torch.bincount(shown.long().cpu(), minlength=n_items).float()
    clicks = torch.bincount(shown.long().cpu(), weights=clicked.float().cpu(), minlength=n_items)
    overall = clicks.sum() / shows.sum()
    rate = (clicks + prior_shows * overall) / (shows + prior_shows)

    def score(obs: Observation) -> torch.Tensor:
        return rate.to(obs["items"].device).expand(_batch_size(obs), -1)

    return Policy("click-through", score, n_items)


def interleave(sources: list[Policy], name: str | None = None) -> Policy:
    """Blend candidate sources round-robin: the first source's best valid item, the second's,
    …, then each one's second best, skipping items already taken (as production retrievers
    merge their sources). Its top-1 is the first source's."""
    n_items = sources[0].n_items
    if any(s.n_items != n_items for s in sources):
        raise ValueError("every source must rank the same catalogue")

    def score(obs: Observation) -> torch.Tensor:
        best = None
        for s, source in enumerate(sources):
            order = source.masked_scores(obs).argsort(1, descending=True)
            ranks = torch.empty_like(order).scatter_(
                1, order, torch.arange(n_items, device=order.device).expand_as(order)
            )
            position = ranks * len(sources) + s  # round-robin position in the blend
            best = position if best is None else torch.minimum(best, position)
        return -best.float()

    label = name or " + ".join(s.name for s in sources)
    return Policy(label, score, n_items)
