"""Non-learning policies for the batched simulator: ``policy(sim, obs) -> actions [B]``.

Every policy here avoids items it already showed in the session (``sim.shown``, which a real
recommender knows). Two of them cheat on purpose and read the user's hidden state — the
oracles — to show what perfect information is worth:

- ``random_policy``: uniform over unshown items;
- ``most_popular``: the most-interacted unshown item in the training data;
- ``greedy_oracle``: the unshown item with the highest click probability *now* (hidden state);
- ``oracle_planner(lam)``: click probability + ``lam`` · expected budget change (hidden state),
  a one-step look-ahead that values keeping the session alive;
- ``population_planner``: no user state at all: popular items, skipping low-quality ones
  and genres shown in the last few steps.
"""

from __future__ import annotations

import torch

from recrl_lib.envs.simulator import UserSimulator


def _best_unshown(sim: UserSimulator, scores: torch.Tensor) -> torch.Tensor:
    """Argmax of scores [B, N] over items not yet shown this session -> [B]."""
    return scores.masked_fill(sim.shown, -float("inf")).argmax(1)


def random_policy(sim: UserSimulator, obs, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Uniform over unshown items; ``allowed`` ([N] bool) restricts the draw to those items
    (bind it with ``functools.partial``)."""
    noise = torch.rand(sim.batch_size, sim.world.n_items, generator=sim.generator, device=sim.device)  # fmt: skip
    if allowed is not None:
        noise = noise.masked_fill(~allowed.to(sim.device), -1.0)
    return _best_unshown(sim, noise)


def most_popular(sim: UserSimulator, obs) -> torch.Tensor:
    return _best_unshown(sim, sim.world.popularity.expand(sim.batch_size, -1))


def greedy_oracle(sim: UserSimulator, obs) -> torch.Tensor:
    return _best_unshown(sim, sim.click_probabilities())


def oracle_planner(lam: float = 0.5):
    """score = P(click) + lam · E[budget change], both from the hidden state."""

    def policy(sim: UserSimulator, obs) -> torch.Tensor:
        return _best_unshown(sim, sim.click_probabilities() + lam * sim.expected_budget_change())

    policy.__name__ = f"oracle_planner(lam={lam})"
    return policy


def population_planner(min_quality: float = 0.55, recent_steps: int = 2):
    """Popularity among items whose training-data quality >= ``min_quality`` and whose genres
    do not overlap those of the last ``recent_steps`` items shown (read from the observation)."""

    def policy(sim: UserSimulator, obs) -> torch.Tensor:
        w = sim.world
        recent = obs["items"][:, -recent_steps:]
        recent_mask = obs["mask"][:, -recent_steps:, None].float()
        recent_genres = (w.genres[recent] * recent_mask).amax(1)  # [B, G]
        repeats_genre = (recent_genres @ w.genres.T) > 0  # [B, N]
        score = w.popularity.expand(sim.batch_size, -1).clone()
        score -= 1e6 * (w.item_quality < min_quality).float()  # skip poor items ...
        score -= 1e3 * repeats_genre.float()  # ... and recent genres, when possible
        return _best_unshown(sim, score)

    policy.__name__ = "population_planner"
    return policy
