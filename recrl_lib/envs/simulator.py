"""A batched user simulator: one call steps a whole batch of users on the device.

Each step the recommender shows every user a slate of ``k`` items; the user clicks one of
them or none (multinomial logit, no-click logit 0; with ``k = 1`` this is a logistic click):

    logit(u, i) = a·aff(u, i) + c·clickbait(i) − s·(satiation(u) · genres(i)) / |genres(i)| + β

A click earns reward 1 and a rating round(1 + 4·quality(u, i) + noise), clipped to 1..5, where

    quality(u, i) = m·item_quality(i) + (1 − m)·sigmoid(aff(u, i)),   0 for clickbait.

Long-term dynamics make click-chasing lose to planning:

- **budget**: the session's patience. A click moves it by ``refill·2(quality − ½)`` — good
  items refill it, clickbait (quality 0) drains it — and a miss costs ``miss_cost``.
- **satiation** per genre: ``satiation ← decay·satiation + genres(clicked item)``.
- **interest drift**: a click pulls the user's hidden vector p_u a fraction ``drift`` of the
  way toward the clicked item's vector rescaled to the user's norm, q_i·‖p_u‖/‖q_i‖.

A session ends when the budget reaches 0 or after ``horizon`` steps. Both ends are part of the
task (the step count is in the observation), so both are reported as ``terminated``;
``truncated`` is left for limits imposed from outside, such as Gymnasium's ``TimeLimit``.
Users can come back: ``new_session`` starts another session of the same users (budget and
satiation reset; the hidden vector, with its drift, carries over).

The user's vector, satiation and budget stay hidden; the observation is the session's log.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recrl_lib.device import get_device
from recrl_lib.envs.world import World


@dataclass
class SimulatorConfig:
    """Simulator settings; the defaults are the course's default world."""

    horizon: int = 50  # steps in a session at most; the end of the task
    history_len: int | None = None  # past steps observed; None = the whole session (horizon)
    slate_size: int = 1  # items shown per step (k)
    affinity_scale: float = 1.5  # logit per standard deviation of hidden affinity (a)
    clickbait_appeal: float = 1.0  # logit boost of clickbait items (c)
    satiation_weight: float = 1.0  # logit penalty per unit of genre satiation (s)
    satiation_decay: float = 0.7  # satiation kept from one step to the next
    click_bias: float = -2.0  # baseline logit (β)
    budget_init: float = 5.0  # patience at the start of a session
    refill: float = 1.0  # budget change on a click = refill · 2 · (quality − 0.5)
    miss_cost: float = 1.0  # budget lost on a step with no click
    quality_mix: float = 0.5  # m in quality = m · item quality + (1 − m) · sigmoid(affinity)
    drift: float = 0.05  # fraction of the way a click pulls the user toward the item
    rating_noise: float = 0.5  # std of the noise on the 1..5 rating
    observe_features: bool = False  # add demographics to the observation
    observe_user: bool = False  # add the user's id: a returning user the recommender knows

    def __post_init__(self):
        for name in ("horizon", "slate_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"SimulatorConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.history_len is not None and self.history_len < 1:
            raise ValueError(
                f"SimulatorConfig.history_len must be >= 1 or None (the whole session), "
                f"got {self.history_len}"
            )
        if not 0.0 <= self.satiation_decay < 1.0:
            raise ValueError(f"satiation_decay must be in [0, 1), got {self.satiation_decay}")
        if self.budget_init <= 0:
            raise ValueError(f"budget_init must be > 0, got {self.budget_init}")

    @property
    def observed_steps(self) -> int:
        """How many past steps the observation holds (H)."""
        return self.history_len or self.horizon


def shown_items(obs: dict[str, torch.Tensor], n_items: int) -> torch.Tensor:
    """[B, N] bool: the items in the observed log (what the recommender already showed)."""
    items, mask = obs["items"], obs["mask"]
    # Padding steps write into an extra sink column, so no real item is ever un-marked by them
    # (scatter's order among duplicate indices is undefined, on GPUs especially).
    shown = torch.zeros(items.shape[0], n_items + 1, dtype=torch.bool, device=items.device)
    shown.scatter_(1, torch.where(mask, items, n_items), True)
    return shown[:, :n_items]


def session_observation(
    items: torch.Tensor,
    clicks: torch.Tensor,
    ratings: torch.Tensor,
    mask: torch.Tensor,
    steps: torch.Tensor,
    totals: torch.Tensor,
    horizon: int,
) -> dict[str, torch.Tensor]:
    """The one observation layout every policy reads, built here for the simulator, a logged
    history (:func:`observation_from_history`) and a logged session
    (:func:`recrl_lib.agents.reinforce_offpolicy.observations_from_log`) alike.

    items [B, H] long, clicks [B, H], ratings [B, H] (rating / 5, 0 = no click), mask [B, H]
    bool (True = a real step; the rest is zeroed), steps [B] (steps taken so far), totals
    [B, 3] (the session's clicks, misses and sum of rating / 5 so far) -> the same four [B, H],
    step [B, 1] = steps / horizon and session [B, 3] = totals / horizon.
    """
    return {
        "items": items * mask,
        "clicks": clicks * mask,
        "ratings": ratings * mask,
        "mask": mask.clone(),
        "step": steps[:, None].float() / horizon,
        "session": totals / horizon,
    }


def observation_from_history(
    items: torch.Tensor,
    ratings: torch.Tensor,
    mask: torch.Tensor,
    config: SimulatorConfig,
) -> dict[str, torch.Tensor]:
    """A logged history in the simulator's observation format, for offline ranking.

    items [B, L] long, ratings [B, L] (1..5) and mask [B, L] (e.g. from
    :func:`recrl_lib.datasets.recent_history`) are read as a session so far in which every
    item was clicked and rated: clicks 1, ratings / 5, step L' / horizon, session totals (the
    clicks, no misses, the ratings / 5) / horizon, with L' the real steps of each row. L must be
    at most the observed steps H; the log is padded on the left to H.
    """
    B, L = items.shape
    H, horizon = config.observed_steps, config.horizon
    if L > H or ratings.shape != items.shape or mask.shape != items.shape:
        raise ValueError(
            f"need items, ratings, mask of one shape [B, L] with L <= {H} observed steps, "
            f"got {tuple(items.shape)}, {tuple(ratings.shape)}, {tuple(mask.shape)}"
        )
    if config.observe_features or config.observe_user:
        raise ValueError(
            "observation_from_history has no user features or ids: build the config with "
            "observe_features=False and observe_user=False"
        )
    if ((ratings[mask] < 1) | (ratings[mask] > 5)).any():
        raise ValueError("ratings of the real steps must lie in 1..5")
    pad = H - L

    def padded(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(x, (pad, 0))

    scaled = ratings * mask / 5
    n = mask.sum(1).float()
    totals = torch.stack([n, torch.zeros_like(n), scaled.sum(1)], 1)  # clicks, no misses, ratings
    return session_observation(
        padded(items), padded(mask.float()), padded(scaled), padded(mask), n, totals, horizon
    )


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
        user_pool: torch.Tensor | None = None,
    ):
        self.config = config or SimulatorConfig()
        self.device = torch.device(device) if device is not None else get_device()
        self.world = world.to(self.device)
        # The real users a reset without ``users`` draws from (default: all): e.g. the training
        # half of a split, so that agents never meet the users their claims are made on.
        if user_pool is None:
            user_pool = torch.arange(world.n_users)
        user_pool = torch.as_tensor(user_pool)
        if (
            user_pool.ndim != 1
            or len(user_pool) == 0
            or user_pool.dtype.is_floating_point
            or user_pool.dtype == torch.bool
            or user_pool.min() < 0
            or user_pool.max() >= world.n_users
        ):
            raise ValueError(
                f"user_pool must be a non-empty 1-D tensor of user ids in 0..{world.n_users - 1} "
                "(e.g. one half of split_users; for a mask, pass mask.nonzero()[:, 0]); got "
                f"{tuple(user_pool.shape)} {user_pool.dtype}"
            )
        self.user_pool = user_pool.to(self.device, torch.long)
        self.batch_size = batch_size
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        B, H, dev = batch_size, self.config.observed_steps, self.device
        # Hidden state: only oracles read it.
        self.user_ids = torch.full((B,), -1, dtype=torch.long, device=dev)  # -1: synthetic
        self.user_vectors = torch.zeros(B, world.user_vectors.shape[1], device=dev)
        self.features = torch.zeros(B, world.user_features.shape[1], device=dev)
        self.satiation = torch.zeros(B, world.genres.shape[1], device=dev)
        self.budget = torch.zeros(B, device=dev)
        # What the recommender logs. History newest last; padding (mask False) on the left.
        self.t = torch.zeros(B, dtype=torch.long, device=dev)
        self.hist_items = torch.zeros(B, H, dtype=torch.long, device=dev)
        self.hist_clicks = torch.zeros(B, H, device=dev)
        self.hist_ratings = torch.zeros(B, H, device=dev)
        self.hist_mask = torch.zeros(B, H, dtype=torch.bool, device=dev)
        self.session = torch.zeros(B, 3, device=dev)  # clicks, misses, sum of rating / 5
        self._n_genres = world.genres.sum(1).clamp(min=1.0).to(dev)

    # ------------------------------------------------------------------ state

    _STATE = (
        *("user_ids", "user_vectors", "features", "satiation", "budget"),  # hidden
        *("t", "hist_items", "hist_clicks", "hist_ratings", "hist_mask", "session"),  # the log
    )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything that evolves, hidden state and random generator included (a snapshot)."""
        state = {name: getattr(self, name).clone() for name in self._STATE}
        return state | {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a :meth:`state_dict` snapshot: the simulator continues exactly from there."""
        for name in self._STATE:
            if state[name].shape != getattr(self, name).shape:
                raise ValueError(
                    f"snapshot {name} has shape {tuple(state[name].shape)}, this simulator "
                    f"{tuple(getattr(self, name).shape)}: was it saved with another batch size?"
                )
            setattr(self, name, state[name].to(self.device).clone())
        self.generator.set_state(state["generator"])

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
        users [R, D], e.g. from ``World.sample_users``), else drawn uniformly from the
        simulator's ``user_pool`` (all real users by default).
        """
        if seed is not None:
            self.generator.manual_seed(seed)
        if rows is None:
            rows = torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
        rows = rows.to(self.device)
        n, dim = int(rows.sum()), self.user_vectors.shape[1]
        if user_vectors is not None:
            if user_vectors.shape != (n, dim):
                raise ValueError(
                    f"user_vectors must be [{n}, {dim}] (one per reset row), "
                    f"got {tuple(user_vectors.shape)}"
                )
            self.user_ids[rows] = -1
            self.user_vectors[rows] = user_vectors.to(self.device, torch.float32)
            self.features[rows] = 0.0
        else:
            if users is None:
                pick = torch.randint(
                    len(self.user_pool), (n,), generator=self.generator, device=self.device
                )
                users = self.user_pool[pick]
            users = users.to(self.device)
            if users.shape != (n,) or users.min() < 0 or users.max() >= self.world.n_users:
                raise ValueError(f"users must be {n} ids in 0..{self.world.n_users - 1}")
            self.user_ids[rows] = users
            self.user_vectors[rows] = self.world.user_vectors[users]
            self.features[rows] = self.world.user_features[users]
        return self.new_session(rows)

    def new_session(self, rows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The same users come back for a new session in ``rows`` ([B] bool, default all).

        Budget, satiation and the session's log start afresh; the user's hidden vector (with
        the drift of earlier sessions) carries over. The observation is the new session's log:
        what the recommender remembers of earlier sessions it keeps itself (lesson 06).
        """
        if rows is None:
            rows = torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
        rows = rows.to(self.device)
        self.satiation[rows] = 0.0
        self.budget[rows] = self.config.budget_init
        self.t[rows] = 0
        for log in (self.hist_items, self.hist_clicks, self.hist_ratings, self.hist_mask):
            log[rows] = 0
        self.session[rows] = 0.0
        return self.observe()

    # ------------------------------------------------------------------ dynamics

    def _logits(self, affinity, clickbait, satiated) -> torch.Tensor:
        """The choice model's logit (module docstring), for any matching shapes."""
        c = self.config
        return (
            c.affinity_scale * affinity
            + c.clickbait_appeal * clickbait.float()
            - c.satiation_weight * satiated
            + c.click_bias
        )

    def _quality(self, affinity, item_quality, clickbait) -> torch.Tensor:
        """How satisfying an item is to a user, in [0, 1]; clickbait is worth 0."""
        m = self.config.quality_mix
        quality = m * item_quality + (1 - m) * torch.sigmoid(affinity)
        return torch.where(clickbait, torch.zeros_like(quality), quality)

    def logits(self, items: torch.Tensor) -> torch.Tensor:
        """Click logits of items [B, K] for each row's current hidden state -> [B, K]."""
        w = self.world
        genres = w.genres[items]  # [B, K, G]
        satiated = (self.satiation[:, None, :] * genres).sum(-1) / self._n_genres[items]
        return self._logits(w.affinity(self.user_vectors, items), w.clickbait[items], satiated)

    def quality(self, items: torch.Tensor) -> torch.Tensor:
        """quality(u, i) of items [B, K] for each row's user -> [B, K] in [0, 1]."""
        w = self.world
        affinity = w.affinity(self.user_vectors, items)
        return self._quality(affinity, w.item_quality[items], w.clickbait[items])

    def _logits_and_quality_all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, N] logits and qualities of every item, as matrix products (no [B, N, G] gather)."""
        w = self.world
        affinity = w.affinity_all(self.user_vectors)
        satiated = (self.satiation @ w.genres.T) / self._n_genres
        logits = self._logits(affinity, w.clickbait, satiated)
        return logits, self._quality(affinity, w.item_quality, w.clickbait)

    def click_probabilities(self) -> torch.Tensor:
        """[B, N]: each item's click probability if shown alone now (hidden state: oracles only)."""
        return torch.sigmoid(self._logits_and_quality_all()[0])

    def expected_budget_change(self) -> torch.Tensor:
        """[B, N]: E[budget change] if each item were shown alone now (hidden: oracles only)."""
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
            raise ValueError(
                f"actions must have shape {expected} (batch {B}, slate size {k}), "
                f"got {tuple(actions.shape)}"
            )
        low, high = actions.min().item(), actions.max().item()
        if low < 0 or high >= N:
            raise ValueError(f"actions must be item ids in 0..{N - 1}, got values in {low}..{high}")
        slate = actions.long().view(B, k)
        if k > 1 and (slate.sort(1).values.diff(dim=1) == 0).any():
            raise ValueError("a slate must not show the same item twice")
        return slate

    def step(self, actions: torch.Tensor, active: torch.Tensor | None = None):
        """Show slates ``actions`` ([B] item ids, or [B, k] for slates) to every user.

        Returns (observation, reward [B], terminated [B], truncated [B], info). ``info`` has
        ``clicked_item`` [B] (-1 for none) and ``rating`` [B] (0 for none): what the
        recommender logs. ``truncated`` is always False here (see the module docstring).
        Rows that already ended keep stepping; reset them (``reset(rows=done)``) first, or pass
        ``active`` ([B] bool): inactive rows stay exactly as they were (hidden state and log),
        with reward 0 and no click, so that ``new_session`` continues from where they ended.
        """
        slate = self._check_actions(actions)  # [B, k]
        before = None if active is None else self.state_dict()
        c, w, B, dev = self.config, self.world, self.batch_size, self.device
        rows = torch.arange(B, device=dev)

        # Choice: multinomial logit over [no click, item_1 .. item_k], sampled by inverse CDF.
        logits = torch.cat([torch.zeros(B, 1, device=dev), self.logits(slate)], dim=1)
        cdf = torch.softmax(logits, dim=1).cumsum(1)
        u = torch.rand(B, 1, generator=self.generator, device=dev)
        choice = (cdf < u).sum(1).clamp(max=slate.shape[1])  # 0 = no click
        clicked = choice > 0
        item = slate[rows, (choice - 1).clamp(min=0)]  # the clicked item, or the first shown

        quality = self.quality(item[:, None])[:, 0]
        noise = c.rating_noise * torch.randn(B, generator=self.generator, device=dev)
        stars = (1 + 4 * quality + noise).round().clamp(1, 5)
        rating = torch.where(clicked, stars, torch.zeros_like(stars))

        # Long-term dynamics (hidden).
        change = torch.where(clicked, c.refill * 2 * (quality - 0.5), -c.miss_cost)
        self.budget += change
        self.satiation = c.satiation_decay * self.satiation + clicked[:, None] * w.genres[item]
        item_vectors = w.item_vectors[item]
        scale = self.user_vectors.norm(dim=1, keepdim=True)
        target = item_vectors * scale / item_vectors.norm(dim=1, keepdim=True).clamp(min=1e-6)
        drifted = self.user_vectors + c.drift * (target - self.user_vectors)
        self.user_vectors = torch.where(clicked[:, None], drifted, self.user_vectors)

        # The log: shift left, append the step.
        self.t += 1
        self.session += torch.stack([clicked.float(), (~clicked).float(), rating / 5], dim=1)
        self.hist_items = torch.cat([self.hist_items[:, 1:], item[:, None]], 1)
        self.hist_clicks = torch.cat([self.hist_clicks[:, 1:], clicked[:, None].float()], 1)
        self.hist_ratings = torch.cat([self.hist_ratings[:, 1:], rating[:, None] / 5], 1)
        self.hist_mask = torch.cat([self.hist_mask[:, 1:], torch.ones_like(clicked[:, None])], 1)

        if before is not None:  # inactive rows: back to where they were
            active = active.to(dev)
            for name in self._STATE:
                now = getattr(self, name)
                keep = active.view(-1, *[1] * (now.dim() - 1))
                setattr(self, name, torch.where(keep, now, before[name]))
            clicked, rating = clicked & active, rating * active

        reward = clicked.float()
        terminated = (self.budget <= 0) | (self.t >= c.horizon)
        truncated = torch.zeros_like(terminated)
        info = {"clicked_item": torch.where(clicked, item, -1), "rating": rating}
        return self.observe(), reward, terminated, truncated, info

    def observe(self) -> dict[str, torch.Tensor]:
        """What the agent sees: the session's log and its progress.

        items [B, H] long, clicks [B, H], ratings [B, H] (rating / 5, 0 = no click),
        mask [B, H] bool (True = a real step), with H = ``config.observed_steps`` (the whole
        session by default); step [B, 1] (t / horizon); session [B, 3] (the session's clicks,
        misses and sum of rating / 5 so far, each / horizon: enough to estimate the hidden
        budget); with ``observe_features`` the demographics features [B, F]; with
        ``observe_user`` the user's id [B, 1] long (-1 for a synthetic user): who logged in,
        which a recommender knows of its returning users (their past is in its training split).
        """
        obs = session_observation(
            self.hist_items,
            self.hist_clicks,
            self.hist_ratings,
            self.hist_mask,
            self.t,
            self.session,
            self.config.horizon,
        )
        if self.config.observe_features:
            obs["features"] = self.features.clone()
        if self.config.observe_user:
            obs["user"] = self.user_ids[:, None].clone()
        return obs
