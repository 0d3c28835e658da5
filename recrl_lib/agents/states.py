"""Session states to act from, and the value of one decision taken there (lessons 09 and 10).

A policy that is expensive to run (a language model) is trained and measured one decision at a
time: the simulator runs sessions under a cheap *behaviour* policy up to a random step, keeps a
snapshot of every row (:class:`SessionStates`), and the value of showing item a at state s is
the clicks of that step and of the next ``lookahead − 1`` steps under a *continuation* policy,

    R(s, a) = r_0 + r_1 + … + r_{lookahead−1},    a_0 = a,  a_t = continuation(s_t),

so what an item does to the session (clickbait drains the budget; a sated genre is skipped)
shows up in the steps after it. With ``satisfaction=True`` a step's reward is the click weighted
by how the user rated it, r_t = click_t · (rating_t − 1) / 4 ∈ [0, 1]: what the log records of
whether a click was worth it (clickbait earns its click and a 1-star rating, so 0).
Replaying a snapshot restores the hidden state on the simulator only: the policy still sees the
observation alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recrl_lib.agents.baselines import Observation, Policy
from recrl_lib.envs.simulator import UserSimulator


@dataclass
class SessionStates:
    """P live session states: ``obs`` (what policies see) and the simulator's ``snapshot`` of
    the same rows (hidden state included, for replays only)."""

    obs: Observation
    snapshot: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return self.obs["items"].shape[0]

    def select(self, rows: torch.Tensor) -> SessionStates:
        """The states at ``rows`` ([P] bool or long)."""
        return SessionStates(
            {k: v[rows] for k, v in self.obs.items()},
            {k: v[rows] for k, v in self.snapshot.items()},
        )


@torch.no_grad()
def sample_session_states(
    sim: UserSimulator,
    behaviour: Policy,
    n: int,
    *,
    max_steps: int,
    seed: int,
    users: torch.Tensor | None = None,
) -> SessionStates:
    """``n`` live states: sessions of ``sim``'s users (or ``users`` [sim.batch_size]) under
    ``behaviour``, each stopped after a uniform 0..``max_steps`` steps; sessions that ended
    before are dropped. ``sim.batch_size`` must be at least ``n``; draw more rows than ``n``
    so that enough stay alive."""
    if not 0 <= max_steps < sim.config.horizon:
        raise ValueError(f"max_steps must be in 0..{sim.config.horizon - 1}, got {max_steps}")
    B = sim.batch_size
    generator = torch.Generator().manual_seed(seed)
    stop = torch.randint(max_steps + 1, (B,), generator=generator).to(sim.device)
    obs = sim.reset(seed=seed, users=users)
    alive = torch.ones(B, dtype=torch.bool, device=sim.device)
    for t in range(max_steps):
        moving = alive & (stop > t)
        if not moving.any():
            break
        obs, _, terminated, truncated, _ = sim.step(behaviour(obs), active=moving)
        alive &= ~((terminated | truncated) & moving)
    keep = alive.nonzero()[:, 0][:n]
    if len(keep) < n:
        raise ValueError(
            f"only {len(keep)} of {B} sessions were alive, {n} wanted: "
            "give the simulator a larger batch or lower max_steps"
        )
    snapshot = {k: v[keep] for k, v in sim.state_dict().items() if k != "generator"}
    return SessionStates({k: v[keep] for k, v in obs.items()}, snapshot)


class LookaheadReward:
    """R(s, a) of the module docstring, replayed on a simulator of the same world and config.

    ``reward(states, items [P, G]) -> [P, G]``: each of the G items shown at each state, from its
    own copy of the state, with its own random numbers (``seed``, if given, restarts them: two
    calls with one seed meet the same random numbers, so their results pair up).
    """

    def __init__(
        self,
        sim: UserSimulator,
        continuation: Policy,
        *,
        lookahead: int = 1,
        satisfaction: bool = False,
        seed: int = 0,
    ):
        if lookahead < 1:
            raise ValueError(f"lookahead must be >= 1 step, got {lookahead}")
        self.world, self.config, self.device = sim.world, sim.config, sim.device
        self.continuation, self.lookahead, self.seed = continuation, lookahead, seed
        self.satisfaction = satisfaction
        self._replays: dict[int, UserSimulator] = {}

    def _replay(self, rows: int) -> UserSimulator:
        if rows not in self._replays:
            seed = self.seed + rows
            replay = UserSimulator(
                self.world, self.config, batch_size=rows, seed=seed, device=self.device
            )
            self._replays[rows] = replay
        return self._replays[rows]

    @torch.no_grad()
    def __call__(
        self, states: SessionStates, items: torch.Tensor, *, seed: int | None = None
    ) -> torch.Tensor:
        P, G = items.shape
        if len(states) != P:
            raise ValueError(f"items has {P} rows for {len(states)} states")
        replay = self._replay(P * G)
        if seed is not None:
            replay.generator.manual_seed(seed)
        copies = {k: v.repeat_interleave(G, 0) for k, v in states.snapshot.items()}
        replay.load_state_dict(copies | {"generator": replay.generator.get_state()})
        obs, total, terminated, truncated, info = replay.step(items.reshape(-1).to(self.device))
        total = self._reward(total, info)
        alive = ~(terminated | truncated)
        for _ in range(self.lookahead - 1):
            if not alive.any():
                break
            obs, reward, terminated, truncated, info = replay.step(
                self.continuation(obs), active=alive
            )
            total = total + self._reward(reward, info) * alive
            alive &= ~(terminated | truncated)
        return total.view(P, G)

    def _reward(self, clicks: torch.Tensor, info: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.satisfaction:
            return clicks
        return clicks * (info["rating"] - 1).clamp(min=0) / 4


@torch.no_grad()
def decision_values(
    states: SessionStates,
    policy,
    reward: LookaheadReward,
    *,
    repeats: int = 32,
    seed: int = 0,
) -> torch.Tensor:
    """[P]: the mean of R(s, a) over ``repeats`` replays at each state, a = ``policy(obs)``.
    One ``seed`` for every policy compared: the same random numbers, so results pair up."""
    items = policy(states.obs)
    return reward(states, items[:, None].expand(-1, repeats), seed=seed).mean(1)
