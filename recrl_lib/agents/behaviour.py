"""Stochastic policies, for logging data and for off-policy evaluation.

Off-policy evaluation needs the *probability* with which each logged item was chosen, so a
logging policy must be stochastic and say its probabilities. A :class:`StochasticPolicy` gives
``probs(obs) -> [B, N]`` (each row sums to 1 over the valid items, 0 elsewhere) and draws from
it with its own generator. Three ways to make one from any :class:`~recrl_lib.agents.Policy`:

- :func:`softmax_policy`: π(a|s) ∝ exp(score(s, a) / τ) over valid items (τ → 0: greedy;
  for PPO's logits, τ = 1 is PPO's own π);
- :func:`epsilon_greedy`: the policy's best item with probability 1 − ε, else uniform;
- :func:`mixture`: (1 − α) · p + α · q, a logger that moves away from p as α grows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from recrl_lib.agents.baselines import DeviceGenerators, Observation, Policy


class StochasticPolicy:
    """A named distribution over valid items; see the module docstring."""

    def __init__(
        self,
        name: str,
        probs: Callable[[Observation], torch.Tensor],
        n_items: int,
        *,
        seed: int = 0,
        oracle: bool = False,
    ):
        self.name, self._probs, self.n_items, self.oracle = name, probs, n_items, oracle
        self.seed = seed
        self._generators = DeviceGenerators(seed)

    def __repr__(self) -> str:
        return f"StochasticPolicy({self.name!r}{', oracle' if self.oracle else ''})"

    @torch.no_grad()
    def probs(self, obs: Observation) -> torch.Tensor:
        """[B, N]: the probability of each item (0 for an invalid one)."""
        return self._probs(obs)

    @torch.no_grad()
    def sample(self, obs: Observation) -> tuple[torch.Tensor, torch.Tensor]:
        """(actions [B], their probabilities [B]), drawn with the policy's own generator.

        The generator is seeded once, at the first draw: a policy used twice continues its
        stream, so make a fresh policy (same ``seed``) to repeat a log exactly."""
        probs = self.probs(obs)
        actions = torch.multinomial(probs, 1, generator=self._generators(probs.device))[:, 0]
        return actions, probs.gather(1, actions[:, None])[:, 0]

    def __call__(self, obs: Observation) -> torch.Tensor:
        """A drawn action per row -> [B] (the course's policy protocol)."""
        return self.sample(obs)[0]

    @torch.no_grad()
    def rank(self, obs: Observation, k: int, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """The k most probable items (excluding ``exclude`` [B, N] bool) -> [B, k]."""
        probs = self.probs(obs)
        if exclude is not None:
            probs = probs.masked_fill(exclude.to(probs.device), -1.0)
        return probs.topk(k, dim=1).indices


def softmax_policy(policy: Policy, temperature: float = 1.0, *, seed: int = 0) -> StochasticPolicy:
    """π(a|s) = exp(score(s, a) / τ) / Σ_{valid a'} exp(score(s, a') / τ) over valid items.

    The scores must be a function of the observation (not ``random_policy``'s fresh draws),
    or the probabilities would change from one call to the next."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")

    def probs(obs: Observation) -> torch.Tensor:
        return torch.softmax(policy.masked_scores(obs).double() / temperature, dim=1).float()

    name = f"softmax({policy.name}, τ = {temperature:g})"
    return StochasticPolicy(name, probs, policy.n_items, seed=seed, oracle=policy.oracle)


def epsilon_greedy(policy: Policy, epsilon: float, *, seed: int = 0) -> StochasticPolicy:
    """The policy's best valid item with probability 1 − ε + ε / |valid|, any other valid
    item with probability ε / |valid|."""
    if not 0 <= epsilon <= 1:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")

    def probs(obs: Observation) -> torch.Tensor:
        valid = policy.valid(obs).float()
        best = policy(obs)
        uniform = valid / valid.sum(1, keepdim=True)
        greedy = torch.zeros_like(uniform).scatter_(1, best[:, None], 1.0)
        return (1 - epsilon) * greedy + epsilon * uniform

    name = f"ε-greedy({policy.name}, ε = {epsilon:g})"
    return StochasticPolicy(name, probs, policy.n_items, seed=seed, oracle=policy.oracle)


def mixture(
    first: StochasticPolicy, second: StochasticPolicy, weight: float, *, seed: int = 0
) -> StochasticPolicy:
    """(1 − weight) · first + weight · second: draws from ``second`` with probability
    ``weight``. Both must rank the same items and agree on which are valid."""
    if not 0 <= weight <= 1:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    if first.n_items != second.n_items:
        raise ValueError(f"the policies cover {first.n_items} and {second.n_items} items")

    def probs(obs: Observation) -> torch.Tensor:
        return (1 - weight) * first.probs(obs) + weight * second.probs(obs)

    name = f"{1 - weight:g}·{first.name} + {weight:g}·{second.name}"
    oracle = first.oracle or second.oracle
    return StochasticPolicy(name, probs, first.n_items, seed=seed, oracle=oracle)
