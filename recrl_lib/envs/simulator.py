"""A batched user simulator: one call steps a whole batch of users on the device.

Each step the recommender shows every user a slate of ``k`` items; the user clicks one of
them or none (multinomial logit, no-click logit 0; with ``k = 1`` this is a logistic click):

    logit(u, i) = a·affinity(u, i) + c·clickbait(i) − s·satiation(u)·genres(i)/|genres(i)| + bias

A click earns reward 1 and a rating; long-term dynamics make click-chasing lose to planning:

- **budget**: the session's patience. A click moves it by ``refill·2(quality − ½)`` — good
  items refill it, clickbait (quality 0) drains it — and a miss costs ``miss_cost``. The
  session ends when it reaches 0 (terminated) or after ``horizon`` steps (truncated).
- **satiation** per genre rises with each consumed genre and decays by ``satiation_decay``.
- **interest drift**: a click pulls the user's hidden vector toward the clicked item.

The user's vector, satiation and budget stay hidden; the observation is the recent history.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recrl_lib.device import get_device
from recrl_lib.envs.world import World


@dataclass
class SimulatorConfig:
    """Simulator settings; the defaults are the course's default world."""

    horizon: int = 50  # steps before a session is truncated
    history_len: int = 10  # past steps the agent observes
    slate_size: int = 1  # items shown per step (k)
    affinity_scale: float = 1.5  # logit per standard deviation of hidden affinity (a)
    clickbait_appeal: float = 1.0  # logit boost of clickbait items (c)
    satiation_weight: float = 1.0  # logit penalty per unit of genre satiation (s)
    satiation_decay: float = 0.7  # satiation kept from one step to the next
    click_bias: float = -2.0  # baseline logit
    budget_init: float = 5.0  # patience at the start of a session
    refill: float = 1.0  # budget change on a click = refill · 2 · (quality − 0.5)
    miss_cost: float = 1.0  # budget lost on a step with no click
    quality_mix: float = 0.5  # quality = mix · item quality + (1 − mix) · sigmoid(affinity)
    drift: float = 0.05  # fraction of the way a click pulls the user toward the item
    rating_noise: float = 0.5  # std of the noise on the 1..5 rating
    observe_features: bool = False  # add demographics to the observation

    def __post_init__(self):
        for name in ("horizon", "history_len", "slate_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"SimulatorConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.satiation_decay < 1.0:
            raise ValueError(f"satiation_decay must be in [0, 1), got {self.satiation_decay}")
        if self.budget_init <= 0:
            raise ValueError(f"budget_init must be > 0, got {self.budget_init}")


class UserSimulator:
    """``batch_size`` users stepped together on ``device``; see the module docstring."""

    def __init__(
        self,
        world: World,
        config: SimulatorConfig | None = None,
        *,
        batch_size: int = 1,
        seed: int = 0,
        device: torch.device | str | None = None,
    ):
        self.config = config or SimulatorConfig()
        self.device = torch.device(device) if device is not None else get_device()
        self.world = world.to(self.device)
        self.batch_size = batch_size
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        B, H, dev = batch_size, self.config.history_len, self.device
        self.user_ids = torch.full((B,), -1, dtype=torch.long, device=dev)  # -1: synthetic
        self.user_vectors = torch.zeros(B, world.user_vectors.shape[1], device=dev)
        self.features = torch.zeros(B, world.user_features.shape[1], device=dev)
        self.satiation = torch.zeros(B, world.genres.shape[1], device=dev)
        self.budget = torch.zeros(B, device=dev)
        self.t = torch.zeros(B, dtype=torch.long, device=dev)
        self.shown = torch.zeros(B, world.n_items, dtype=torch.bool, device=dev)
        # history, newest last; padding (mask False) on the left
        self.hist_items = torch.zeros(B, H, dtype=torch.long, device=dev)
        self.hist_clicks = torch.zeros(B, H, device=dev)
        self.hist_ratings = torch.zeros(B, H, device=dev)
        self.hist_mask = torch.zeros(B, H, dtype=torch.bool, device=dev)
        # session totals a recommender logs: clicks, misses, sum of rating / 5
        self.session = torch.zeros(B, 3, device=dev)
        self._n_genres = world.genres.sum(1).clamp(min=1.0).to(dev)

    # ------------------------------------------------------------------ reset

    def reset(
        self,
        rows: torch.Tensor | None = None,
        *,
        users: torch.Tensor | None = None,
        user_vectors: torch.Tensor | None = None,
        seed: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Start new sessions for ``rows`` ([B] bool, default all) and return the observation.

        The new users are ``users`` (real user ids [R]), else ``user_vectors`` (synthetic
        users [R, D], e.g. from ``World.sample_users``), else drawn uniformly from the data.
        """
        if seed is not None:
            self.generator.manual_seed(seed)
        rows = torch.ones(self.batch_size, dtype=torch.bool, device=self.device) if rows is None else rows.to(self.device)  # fmt: skip
        n = int(rows.sum())
        if user_vectors is not None:
            if user_vectors.shape != (n, self.user_vectors.shape[1]):
                raise ValueError(f"user_vectors must be [{n}, {self.user_vectors.shape[1]}], got {tuple(user_vectors.shape)}")  # fmt: skip
            self.user_ids[rows] = -1
            self.user_vectors[rows] = user_vectors.to(self.device, torch.float32)
            self.features[rows] = 0.0
        else:
            if users is None:
                users = torch.randint(self.world.n_users, (n,), generator=self.generator, device=self.device)  # fmt: skip
            users = users.to(self.device)
            if users.shape != (n,) or users.min() < 0 or users.max() >= self.world.n_users:
                raise ValueError(f"users must be {n} ids in 0..{self.world.n_users - 1}")
            self.user_ids[rows] = users
            self.user_vectors[rows] = self.world.user_vectors[users]
            self.features[rows] = self.world.user_features[users]
        self.satiation[rows] = 0.0
        self.budget[rows] = self.config.budget_init
        self.t[rows] = 0
        self.shown[rows] = False
        for state in (self.hist_items, self.hist_clicks, self.hist_ratings, self.hist_mask, self.session):  # fmt: skip
            state[rows] = 0
        return self.observe()

    # ------------------------------------------------------------------ dynamics

    def logits(self, items: torch.Tensor) -> torch.Tensor:
        """Click logits of items [B, K] for each row's current hidden state -> [B, K]."""
        c, w = self.config, self.world
        satiated = (self.satiation[:, None, :] * w.genres[items]).sum(-1) / self._n_genres[items]
        return (
            c.affinity_scale * w.affinity(self.user_vectors, items)
            + c.clickbait_appeal * w.clickbait[items].float()
            - c.satiation_weight * satiated
            + c.click_bias
        )

    def quality(self, items: torch.Tensor) -> torch.Tensor:
        """How satisfying items [B, K] are to each row's user, in [0, 1]; clickbait is 0."""
        c, w = self.config, self.world
        q = c.quality_mix * w.item_quality[items] + (1 - c.quality_mix) * torch.sigmoid(
            w.affinity(self.user_vectors, items)
        )
        return torch.where(w.clickbait[items], torch.zeros_like(q), q)

    def _logits_and_quality_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, N] logits and qualities of every item, as matrix products (no [B, N, G] gather)."""
        c, w = self.config, self.world
        affinity = w.affinity_all(self.user_vectors)
        satiated = (self.satiation @ w.genres.T) / self._n_genres
        logits = c.affinity_scale * affinity + c.clickbait_appeal * w.clickbait.float() - c.satiation_weight * satiated + c.click_bias  # fmt: skip
        quality = c.quality_mix * w.item_quality + (1 - c.quality_mix) * torch.sigmoid(affinity)
        return logits, torch.where(w.clickbait, torch.zeros_like(quality), quality)

    def click_probabilities(self) -> torch.Tensor:
        """[B, N]: each item's click probability if shown alone now (hidden state: oracles only)."""
        return torch.sigmoid(self._logits_and_quality_all()[0])

    def expected_budget_change(self) -> torch.Tensor:
        """[B, N]: E[budget change] if each item were shown alone now (hidden state: oracles only)."""
        c = self.config
        logits, quality = self._logits_and_quality_all()
        p = torch.sigmoid(logits)
        return p * c.refill * 2 * (quality - 0.5) - (1 - p) * c.miss_cost

    def _check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        k, B, N = self.config.slate_size, self.batch_size, self.world.n_items
        actions = torch.as_tensor(actions, device=self.device)
        if actions.dtype.is_floating_point or actions.dtype == torch.bool:
            raise TypeError(f"actions must be integer item ids, got dtype {actions.dtype}")
        expected = (B,) if k == 1 else (B, k)
        if k == 1 and actions.shape == (B, 1):
            actions = actions[:, 0]
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions must have shape {expected} (batch {B}, slate size {k}), got {tuple(actions.shape)}")  # fmt: skip
        if actions.min() < 0 or actions.max() >= N:
            raise ValueError(f"actions must be item ids in 0..{N - 1}, got values in {actions.min().item()}..{actions.max().item()}")  # fmt: skip
        slate = actions.long().view(B, k)
        if k > 1 and (slate.sort(1).values.diff(dim=1) == 0).any():
            raise ValueError("a slate must not show the same item twice")
        return slate

    def step(self, actions: torch.Tensor):
        """Show slates ``actions`` ([B] item ids, or [B, k] for slates) to every user.

        Returns (observation, reward [B], terminated [B], truncated [B], info). ``info`` has
        ``clicked_item`` [B] (-1 for none), ``rating`` [B] (0 for none) and ``budget`` [B].
        Rows that already ended keep stepping; reset them (``reset(rows=done)``) first.
        """
        slate = self._check_actions(actions)  # [B, k]
        c, w, B = self.config, self.world, self.batch_size
        rows = torch.arange(B, device=self.device)

        # Choice: multinomial logit over [no click, item_1 .. item_k], sampled by inverse CDF.
        logits = torch.cat([torch.zeros(B, 1, device=self.device), self.logits(slate)], dim=1)
        cdf = torch.softmax(logits, dim=1).cumsum(1)
        u = torch.rand(B, 1, generator=self.generator, device=self.device)
        choice = (cdf < u).sum(1).clamp(max=slate.shape[1])  # 0 = no click
        clicked = choice > 0
        item = slate[rows, (choice - 1).clamp(min=0)]  # the clicked item, or the first shown

        quality = self.quality(item[:, None])[:, 0]
        noise = c.rating_noise * torch.randn(B, generator=self.generator, device=self.device)
        rating = torch.where(clicked, (1 + 4 * quality + noise).round().clamp(1, 5), torch.zeros_like(quality))  # fmt: skip

        # Long-term dynamics.
        self.budget += torch.where(clicked, c.refill * 2 * (quality - 0.5), torch.full_like(quality, -c.miss_cost))  # fmt: skip
        self.satiation = c.satiation_decay * self.satiation + clicked[:, None] * w.genres[item]
        target = w.item_vectors[item] * (self.user_vectors.norm(dim=1, keepdim=True) / w.item_vectors[item].norm(dim=1, keepdim=True).clamp(min=1e-6))  # fmt: skip
        self.user_vectors = torch.where(clicked[:, None], self.user_vectors + c.drift * (target - self.user_vectors), self.user_vectors)  # fmt: skip
        self.shown[rows[:, None], slate] = True
        self.t += 1
        self.session += torch.stack([clicked.float(), (~clicked).float(), rating / 5], dim=1)

        # History: shift left, append the step.
        self.hist_items = torch.cat([self.hist_items[:, 1:], item[:, None]], 1)
        self.hist_clicks = torch.cat([self.hist_clicks[:, 1:], clicked[:, None].float()], 1)
        self.hist_ratings = torch.cat([self.hist_ratings[:, 1:], rating[:, None] / 5], 1)
        self.hist_mask = torch.cat([self.hist_mask[:, 1:], torch.ones(B, 1, dtype=torch.bool, device=self.device)], 1)  # fmt: skip

        reward = clicked.float()
        terminated = self.budget <= 0
        truncated = (self.t >= c.horizon) & ~terminated
        info = {"clicked_item": torch.where(clicked, item, -1), "rating": rating, "budget": self.budget.clone()}  # fmt: skip
        return self.observe(), reward, terminated, truncated, info

    def observe(self) -> dict[str, torch.Tensor]:
        """What the agent sees: the last ``history_len`` steps and the session's progress.

        items [B, H] long, clicks [B, H], ratings [B, H] (rating / 5, 0 = no click),
        mask [B, H] bool (True = a real step), step [B, 1] (t / horizon), session [B, 3] (the
        session's clicks, misses and sum of rating / 5 so far, each / horizon: what a
        recommender logs, and enough to estimate the hidden budget), and with
        ``observe_features`` the demographics features [B, F].
        """
        obs = {
            "items": self.hist_items.clone(),
            "clicks": self.hist_clicks.clone(),
            "ratings": self.hist_ratings.clone(),
            "mask": self.hist_mask.clone(),
            "step": (self.t.float() / self.config.horizon)[:, None],
            "session": self.session / self.config.horizon,
        }
        if self.config.observe_features:
            obs["features"] = self.features.clone()
        return obs
