"""Exploration schedules shared by the value-based agents (tabular Q-learning, DQN)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EpsilonSchedule:
    """ε decays linearly from ``start`` to ``end`` over ``decay_steps``, then stays at ``end``."""

    start: float = 1.0
    end: float = 0.05
    decay_steps: int = 10_000

    def __post_init__(self):
        for name in ("start", "end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                value = getattr(self, name)
                raise ValueError(f"EpsilonSchedule.{name} must be in [0, 1], got {value}")
        if self.decay_steps < 1:
            raise ValueError(f"EpsilonSchedule.decay_steps must be >= 1, got {self.decay_steps}")

    def __call__(self, step: int) -> float:
        fraction = min(1.0, step / self.decay_steps)
        return self.start + fraction * (self.end - self.start)
