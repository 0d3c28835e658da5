"""Meta-RL for cold-start users: learn *how to adapt* to a new user within a few sessions.

A *task* is one user; a *trial* is K sessions of that user, with ``UserSimulator.new_session``
between them (budget and satiation reset; the user's hidden vector, and its drift, carry over).
The file reads top to bottom as lesson 06 does:

1. tasks with a known answer: users drawn from cohorts whose tastes conflict, on a catalogue
   where they conflict; some cohorts are held out of all training;
2. a session policy whose parameters may differ per row (per cohort, per user);
3. playing a session and the REINFORCE loss (lesson 05);
4. the floor and the ceiling: one pooled policy for everyone, one policy per cohort;
5. adaptation by gradient steps: fine-tuning, and Reptile (Nichol et al., 2018), first-order
   meta-learning of the initialisation those steps start from;
6. RL² (Duan et al., 2016; Wang et al., 2016): a recurrent policy whose memory spans the user's
   sessions and is wiped between users, trained with lesson 05's PPO on whole trials;
7. adaptation curves: the return in session 1..K of every method on the same users.

Every policy here acts on the session's observation and on the recommender's own item vectors
and memory. Which cohort a user comes from is hidden: only the per-cohort reference is told,
and it is marked an oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from recrl_lib.agents.ppo import (
    PPOConfig,
    gae,
    log_probs_and_entropy,
    ppo_loss,
    returns_to_go,
    sample,
)
from recrl_lib.envs.simulator import UserSimulator, shown_items
from recrl_lib.envs.world import World

Observation = dict[str, torch.Tensor]
Params = dict[str, torch.Tensor]  # every tensor with a leading "parameter set" dimension


# ----------------------------------------------------------------------------- 1. tasks


def cohort_favourites(world: World, per_cohort: int = 25) -> dict[int, torch.Tensor]:
    """{cohort: [per_cohort] item ids}: each cohort's favourites *relative to the other cohorts*
    (mean affinity in the cohort minus the mean over the others), clickbait left out.

    The benchmark's designer reads the world to build it, as lesson 02 did to build the world;
    a policy is only told which items it may recommend (:func:`conflict_catalogue`).
    """
    affinity = world.affinity_all(world.user_vectors)  # [U, N]
    means = torch.stack([affinity[world.cohorts == c].mean(0) for c in range(world.n_cohorts)])
    favourites = {}
    for c in range(world.n_cohorts):
        others = torch.cat([means[:c], means[c + 1 :]]).mean(0)
        contrast = (means[c] - others).masked_fill(world.clickbait, -float("inf"))
        favourites[c] = contrast.topk(per_cohort).indices
    return favourites


def conflict_catalogue(world: World, per_cohort: int = 25) -> torch.Tensor:
    """[M] sorted item ids: the union of every cohort's :func:`cohort_favourites`.

    The held-out cohorts' favourites are in it too (a held-out user must have something to
    like), and leaving clickbait out makes this a benchmark of tastes, not of lesson 04's trap.
    """
    chosen = torch.cat(list(cohort_favourites(world, per_cohort).values()))
    return chosen.unique()  # sorted, each item once


@dataclass
class CohortTasks:
    """New synthetic users from the world's cohorts (``World.sample_users``): a user is a task.

    ``train_cohorts`` are the ones meta-training may see; ``held_out`` never reach training.
    """

    world: World
    held_out: tuple[int, ...] = (3,)

    def __post_init__(self):
        bad = [c for c in self.held_out if not 0 <= c < self.world.n_cohorts]
        if bad or len(self.held_out) >= self.world.n_cohorts:
            raise ValueError(
                f"held_out must be some (not all) of the cohorts 0..{self.world.n_cohorts - 1}, "
                f"got {self.held_out}"
            )

    @property
    def train_cohorts(self) -> tuple[int, ...]:
        return tuple(c for c in range(self.world.n_cohorts) if c not in self.held_out)

    @property
    def all_cohorts(self) -> tuple[int, ...]:
        return tuple(range(self.world.n_cohorts))

    def sample(
        self, n: int, cohorts: tuple[int, ...], generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n users drawn evenly from ``cohorts`` (in turn) -> (user vectors [n, D], cohort [n])."""
        labels = torch.tensor(cohorts, device=generator.device)[torch.arange(n) % len(cohorts)]
        users = torch.empty(n, self.world.user_vectors.shape[1], device=generator.device)
        for c in cohorts:
            rows = labels == c
            users[rows] = self.world.sample_users(c, int(rows.sum()), generator).to(users)
        return users, labels


# ----------------------------------------------------------------------------- 2. the policy


class SessionPolicy:
    """π(a|s) = softmax over the valid catalogue items of  u(s)·x_a + b_a,  u(s) = W₂ tanh(W₁ s
    + c₁) + w₀, where s is the session read as [mean vector of clicked items ‖ of missed items ‖
    step ‖ session totals] and x_a [M, d] are the recommender's item vectors (from its text
    encoder and its own factorisation of the training split — never the world's hidden vectors).

    The parameters are not stored here: every method passes its own :data:`Params`, tensors with
    a leading dimension of parameter sets — 1 (pooled), one per cohort, or one per user (a
    user's fine-tuned copy) — so that one batched forward serves rows with different weights.
    """

    def __init__(
        self, item_vectors: torch.Tensor, catalogue: torch.Tensor, n_items: int, *, hidden: int = 64
    ):
        if item_vectors.shape[0] != catalogue.shape[0]:
            raise ValueError(
                f"item_vectors has {item_vectors.shape[0]} rows, the catalogue "
                f"{catalogue.shape[0]} items: give one vector per catalogue item"
            )
        self.x = item_vectors.float()  # [M, d]
        self.items = catalogue.long().to(self.x.device)  # [M] simulator item ids
        self.n_items, self.hidden = n_items, hidden
        self.position = torch.full((n_items,), -1, dtype=torch.long, device=self.x.device)
        self.position[self.items] = torch.arange(len(self.items), device=self.x.device)
        self.state_dim = 2 * self.x.shape[1] + 4

    @property
    def n_actions(self) -> int:
        return len(self.items)

    def init(self, n_sets: int, generator: torch.Generator) -> Params:
        """Fresh parameters for ``n_sets`` parameter sets (each set drawn independently)."""
        S, h, d, M = self.state_dim, self.hidden, self.x.shape[1], self.n_actions

        def normal(*shape: int, std: float) -> torch.Tensor:
            return std * torch.randn(n_sets, *shape, generator=generator, device=self.x.device)

        return {
            "w1": normal(S, h, std=S**-0.5),
            "c1": torch.zeros(n_sets, h, device=self.x.device),
            "w2": normal(h, d, std=0.1 * h**-0.5),  # small: start near uniform
            "w0": torch.zeros(n_sets, d, device=self.x.device),
            "bias": torch.zeros(n_sets, M, device=self.x.device),
        }

    def state(self, obs: Observation) -> torch.Tensor:
        """obs -> s [B, 2d + 4]."""
        mask = obs["mask"]
        position = self.position[obs["items"]]
        if (position[mask] < 0).any():
            raise ValueError("the session shows items outside this policy's catalogue")
        vectors = self.x[position.clamp(min=0)]  # [B, H, d]
        clicked = (mask & (obs["clicks"] > 0)).float()[..., None]
        missed = (mask & (obs["clicks"] == 0)).float()[..., None]
        mean_clicked = (vectors * clicked).sum(1) / clicked.sum(1).clamp(min=1.0)
        mean_missed = (vectors * missed).sum(1) / missed.sum(1).clamp(min=1.0)
        return torch.cat([mean_clicked, mean_missed, obs["step"], obs["session"]], dim=1)

    def valid(self, obs: Observation) -> torch.Tensor:
        """[B, M] bool: catalogue items not yet shown in this session."""
        return ~shown_items(obs, self.n_items)[:, self.items]

    def logits(self, state: torch.Tensor, params: Params) -> torch.Tensor:
        """state [..., B, S] with per-row params [B, ...] -> logits [..., B, M]."""
        h = torch.tanh(torch.einsum("...bs,bsh->...bh", state, params["w1"]) + params["c1"])
        u = torch.einsum("...bh,bhd->...bd", h, params["w2"]) + params["w0"]
        return u @ self.x.T + params["bias"]


def rows_of(params: Params, which: torch.Tensor) -> Params:
    """Per-row parameters [B, ...]: set ``which[b]`` for row b (one shared set: a view)."""
    first = next(iter(params.values()))
    if first.shape[0] == 1:
        return {k: v.expand(len(which), *v.shape[1:]) for k, v in params.items()}
    # A one-hot matmul rather than ``v[which]``: the backward of an index adds the rows' gradients
    # in a thread-dependent order, which made the same seed differ in the last bits on CPU.
    one_hot = torch.nn.functional.one_hot(which, first.shape[0]).to(first.dtype)  # [B, sets]
    return {k: (one_hot @ v.flatten(1)).view(len(which), *v.shape[1:]) for k, v in params.items()}


def per_user_copy(params: Params, n_users: int) -> Params:
    """n_users independent copies of a single parameter set, each its own leaf to adapt."""
    return {k: v.expand(n_users, *v.shape[1:]).clone().requires_grad_() for k, v in params.items()}


def catalogue_vectors(
    features: torch.Tensor, catalogue: torch.Tensor, dim: int = 16
) -> torch.Tensor:
    """The recommender's item features [N, F] -> [M, dim] vectors for the catalogue's M items:
    centred over the catalogue, projected on its top ``dim`` principal directions (an SVD), and
    each coordinate scaled to unit standard deviation, so that no direction starts out louder.
    A small catalogue needs few dimensions; fewer inputs make a per-user step better posed."""
    x = features[catalogue].float()
    most = min(x.shape[0] - 1, x.shape[1])  # centring M items leaves at most M − 1 directions
    if not 1 <= dim <= most:
        raise ValueError(f"dim must be between 1 and {most} for this catalogue, got {dim}")
    x = x - x.mean(0)
    _, _, directions = torch.linalg.svd(x, full_matrices=False)
    projected = x @ directions[:dim].T
    return projected / projected.std(0)


# ----------------------------------------------------------------------------- 3. a session


@dataclass
class Session:
    """One session of every row; [T, B] unless noted. ``live``: the row's session was running."""

    states: torch.Tensor  # [T, B, S]
    valid: torch.Tensor  # [T, B, M]
    actions: torch.Tensor  # catalogue positions
    rewards: torch.Tensor  # 0 on steps that were not live
    live: torch.Tensor
    log_probs: torch.Tensor  # log π(a_t|s_t) when acting
    final_state: torch.Tensor  # [B, S]: the state when the row's session ended

    @property
    def returns(self) -> torch.Tensor:
        """[B]: clicks in the session."""
        return self.rewards.sum(0)


STEP_FIELDS = ("states", "valid", "actions", "rewards", "live", "log_probs")


@torch.no_grad()
def play_session(
    sim: UserSimulator, policy: SessionPolicy, logits_fn, generator, *, greedy: bool = False
) -> Session:
    """Run the session that ``sim`` has just started, ``horizon`` steps for every row.

    ``logits_fn(state [B, S]) -> [B, M]`` is the acting method's policy. A row whose session
    ended is no longer ``live``: the simulator leaves it as it ended (``active``), so the user
    who comes back next session is the one who left; its state at the end is ``final_state``.
    """
    if policy.n_actions < sim.config.horizon:
        raise ValueError(
            f"the catalogue has {policy.n_actions} items but a session lasts up to "
            f"{sim.config.horizon} steps without repeats: use a larger catalogue or a shorter "
            "horizon"
        )
    obs = sim.observe()
    state = policy.state(obs)
    final_state = state.clone()
    alive = torch.ones(sim.batch_size, dtype=torch.bool, device=sim.device)
    steps: dict[str, list[torch.Tensor]] = {k: [] for k in STEP_FIELDS}
    for _ in range(sim.config.horizon):
        valid = policy.valid(obs)
        log_probs, _ = log_probs_and_entropy(logits_fn(state), valid)
        actions = log_probs.argmax(-1) if greedy else sample(log_probs, generator)
        chosen = log_probs.gather(1, actions[:, None])[:, 0]
        obs, reward, terminated, truncated, _ = sim.step(policy.items[actions], active=alive)
        for key, value in zip(STEP_FIELDS, (state, valid, actions, reward * alive, alive, chosen)):
            steps[key].append(value.clone())
        state = policy.state(obs)
        final_state = torch.where(alive[:, None], state, final_state)
        alive = alive & ~(terminated | truncated)
    return Session(**{k: torch.stack(v) for k, v in steps.items()}, final_state=final_state)


def session_reinforce_loss(
    policy: SessionPolicy,
    session: Session,
    params: Params,
    *,
    gamma: float = 0.9,
    ent_coef: float = 0.01,
    baseline: str = "batch",
) -> torch.Tensor:
    """Per-row REINFORCE loss [B] (lesson 05) of per-row ``params`` on a played session:

        L_b = −(1/T) Σ_t live_t [(G_t − b_t) log π(a_t|s_t) + ent_coef · H(π(·|s_t))]

    with the baseline b_t = the mean return-to-go at step t over the live rows (``"batch"``), or
    over the row's own live steps (``"user"``: what this user liked more than usual). Both means
    include the step itself, a small bias accepted for simplicity. Row b's loss
    depends on row b's parameters only, so ``L.sum()`` gives every user its own gradient.
    """
    live = session.live.float()
    returns = returns_to_go(session.rewards, gamma)
    over = {"batch": 1, "user": 0}[baseline]  # mean over the rows at step t, or the row's steps
    baseline = (returns * live).sum(over, keepdim=True) / live.sum(over, keepdim=True).clamp(1.0)
    advantages = (returns - baseline) * live
    log_probs, entropy = log_probs_and_entropy(policy.logits(session.states, params), session.valid)
    chosen = log_probs.gather(-1, session.actions[..., None])[..., 0]
    steps = session.rewards.shape[0]
    return -((advantages * chosen).sum(0) + ent_coef * (entropy * live).sum(0)) / steps


# ----------------------------------------------------------------------------- 4. floor, ceiling


class TrialAgent:
    """How a method serves the users of a trial: ``begin`` when new users arrive, ``logits``
    at every step, ``end_session`` after each of their sessions (where adaptation happens)."""

    name: str
    oracle: bool = False

    def begin(self, cohorts: torch.Tensor) -> None:  # cohorts: only an oracle may use them
        raise NotImplementedError

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def end_session(self, session: Session) -> None:
        pass


class FixedAgent(TrialAgent):
    """A policy that does not adapt across sessions: the pooled policy (one parameter set), or
    with ``per_cohort`` the reference that is *told* each user's cohort (an oracle)."""

    def __init__(self, name: str, policy: SessionPolicy, params: Params, *, per_cohort=False):
        self.name, self.policy, self.params = name, policy, params
        self.oracle = per_cohort

    def begin(self, cohorts: torch.Tensor) -> None:
        n_sets = next(iter(self.params.values())).shape[0]
        if self.oracle and (cohorts.min() < 0 or cohorts.max() >= n_sets):
            raise ValueError(f"the per-cohort reference has {n_sets} parameter sets: one a cohort")
        which = cohorts if self.oracle else torch.zeros_like(cohorts)
        self.rows = rows_of(self.params, which)

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        return self.policy.logits(state, self.rows)


def train_sessions(
    policy: SessionPolicy,
    sim: UserSimulator,
    tasks: CohortTasks,
    cohorts: tuple[int, ...],
    *,
    per_cohort: bool = False,
    init: Params | None = None,
    trainable: tuple[str, ...] | None = None,
    iterations: int = 200,
    lr: float = 3e-3,
    gamma: float = 0.9,
    ent_coef: float = 0.01,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Params, pd.DataFrame]:
    """REINFORCE on single sessions of users drawn from ``cohorts``, ``sim.batch_size`` a batch.

    One parameter set for everyone (the pooled floor), or with ``per_cohort`` one set per
    cohort of the world, each trained on its own cohort's users only (the ceiling). ``init``
    (one set) starts every set from it instead of fresh weights, and ``trainable`` names the
    only parameters that learn: ``init=pooled, trainable=("w0",)`` asks how far a per-cohort
    user vector alone goes on top of the pooled policy. Returns (params, history with the mean
    return of each batch).
    """
    generator = torch.Generator(device=sim.device).manual_seed(seed)
    sim.generator.manual_seed(seed)  # the users' clicks too: the same seed, the same run
    n_sets = tasks.world.n_cohorts if per_cohort else 1
    if init is None:
        params = policy.init(n_sets, generator)
    elif next(iter(init.values())).shape[0] != 1:
        raise ValueError("init must be one parameter set (leading dimension 1), e.g. the pooled")
    else:
        params = {k: v.detach().expand(n_sets, *v.shape[1:]).clone() for k, v in init.items()}
    trainable = tuple(params) if trainable is None else tuple(dict.fromkeys(trainable))
    if not trainable or set(trainable) - set(params):
        raise ValueError(f"trainable must name some of {list(params)}, got {trainable}")
    params = {k: v.requires_grad_(k in trainable) for k, v in params.items()}
    optimizer = torch.optim.Adam([params[k] for k in trainable], lr=lr)
    history = []
    for iteration in tqdm(range(iterations), disable=not progress, desc="sessions"):
        users, labels = tasks.sample(sim.batch_size, cohorts, generator)
        sim.reset(user_vectors=users)
        rows = rows_of(params, labels if per_cohort else torch.zeros_like(labels))
        session = play_session(sim, policy, lambda s, rows=rows: policy.logits(s, rows), generator)
        loss = session_reinforce_loss(policy, session, rows, gamma=gamma, ent_coef=ent_coef).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append({"iteration": iteration, "return": session.returns.mean().item()})
    return {k: v.detach() for k, v in params.items()}, pd.DataFrame(history)


# ----------------------------------------------------------------------------- 5. Reptile


ADAPTED = ("w0", "bias")  # what a user's sessions adapt: the user vector and the item biases


def adapt(
    policy: SessionPolicy,
    params: Params,
    session: Session,
    *,
    lr: float,
    gamma: float = 0.0,
    ent_coef: float = 0.0,
) -> Params:
    """One policy-gradient step per user on the session just played: φ_b ← φ_b − α ∇L_b(φ_b),
    on the user vector w₀ and the item biases only (``ADAPTED``). By default with γ = 0 and the
    user's own baseline: raise the items this user clicked, lower the ones they skipped.

    ``params`` are per-user copies ([B, ...], see :func:`per_user_copy`); returns new copies.
    """
    losses = session_reinforce_loss(
        policy, session, params, gamma=gamma, ent_coef=ent_coef, baseline="user"
    )
    loss = losses.sum()  # row b's loss reaches row b's copy only
    names = [k for k in params if k in ADAPTED]
    grads = dict(zip(names, torch.autograd.grad(loss, [params[k] for k in names])))
    return {
        k: (v - lr * grads[k] if k in grads else v).detach().requires_grad_()
        for k, v in params.items()
    }


def reptile_update(theta: Params, adapted: Params, step_size: float) -> Params:
    """Reptile's outer update: move the initialisation toward the users' adapted parameters,

        θ ← θ + ε · (1/B) Σ_b (φ_b − θ),

    θ: one set [1, ...]; adapted φ: one set per user [B, ...]; ε = ``step_size``.
    """
    return {
        k: theta[k] + step_size * (adapted[k].detach().mean(0, keepdim=True) - theta[k])
        for k in theta
    }


class AdaptingAgent(TrialAgent):
    """Starts every user from ``init`` and takes one policy-gradient step on each session:
    fine-tuning when ``init`` is the pooled policy, Reptile when it was meta-learned."""

    def __init__(self, name: str, policy: SessionPolicy, init: Params, *, lr: float, **loss):
        self.name, self.policy, self.init, self.lr, self.loss = name, policy, init, lr, loss

    def begin(self, cohorts: torch.Tensor) -> None:
        self.params = per_user_copy(self.init, len(cohorts))  # a new user: a fresh copy

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        return self.policy.logits(state, self.params)

    def end_session(self, session: Session) -> None:
        self.params = adapt(self.policy, self.params, session, lr=self.lr, **self.loss)


def train_reptile(
    policy: SessionPolicy,
    sim: UserSimulator,
    tasks: CohortTasks,
    init: Params,
    *,
    sessions: int,
    iterations: int = 100,
    inner_lr: float = 0.1,
    step_size: float = 0.5,
    seed: int = 0,
    progress: bool = True,
    **loss,
) -> tuple[Params, pd.DataFrame]:
    """Meta-train the initialisation with Reptile on trials of the training cohorts' users:
    each user adapts over ``sessions`` sessions exactly as at test time (:class:`AdaptingAgent`),
    then θ moves toward the adapted parameters. Returns (θ, history of per-session returns)."""
    generator = torch.Generator(device=sim.device).manual_seed(seed)
    sim.generator.manual_seed(seed)
    theta = {k: v.detach().clone() for k, v in init.items()}
    history = []
    for iteration in tqdm(range(iterations), disable=not progress, desc="Reptile"):
        users, labels = tasks.sample(sim.batch_size, tasks.train_cohorts, generator)
        agent = AdaptingAgent("Reptile", policy, theta, lr=inner_lr, **loss)
        returns, _ = run_trial(sim, policy, agent, users, labels, sessions, generator)
        theta = reptile_update(theta, agent.params, step_size)
        history += [
            {"iteration": iteration, "session": k + 1, "return": r}
            for k, r in enumerate(returns.mean(0).tolist())
        ]
    return theta, pd.DataFrame(history)


# ----------------------------------------------------------------------------- 6. RL²


def reset_memory(memory: torch.Tensor, new_user: torch.Tensor) -> torch.Tensor:
    """RL²'s reset rule: wipe the memory [B, m] of rows where a new user arrives ([B] bool);
    keep it where the same user comes back for another session."""
    return memory * (~new_user).to(memory.dtype)[:, None]


class RL2Network(nn.Module):
    """The session policy plus a memory of the user's earlier sessions.

    Within a session the observation already holds the session's log; the GRU memory carries
    what it cannot, the earlier sessions: m_{k+1} = GRU(s_end of session k, m_k), m_1 = 0. The
    memory moves the policy's user vector: u = W₂ tanh(W₁ s + c₁) + w₀ + A m, logits u·x_a + b_a.
    Starting from a trained session policy (``init``) with A = 0, the network first acts exactly
    as that policy and PPO teaches it to use the memory. The critic reads (s ‖ m ‖ k/K), where
    k/K tells it how many sessions of this user are left.
    """

    def __init__(
        self,
        policy: SessionPolicy,
        sessions: int,
        init: Params | None = None,
        *,
        memory: int = 32,
        hidden: int = 64,
        carry_memory: bool = True,
        seed: int = 0,
    ):
        super().__init__()
        self.policy, self.sessions, self.memory_size = policy, sessions, memory
        self.carry_memory = carry_memory
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if init is None:
                init = policy.init(1, torch.Generator(device=policy.x.device).manual_seed(seed))
            self.actor = nn.ParameterDict({k: nn.Parameter(v[0].clone()) for k, v in init.items()})
            self.cell = nn.GRUCell(policy.state_dim, memory)
            self.read_memory = nn.Linear(memory, policy.x.shape[1], bias=False)
            nn.init.zeros_(self.read_memory.weight)  # A = 0: act as ``init`` at first
            inputs = policy.state_dim + memory + 1
            self.critic = nn.Sequential(
                nn.Linear(inputs, hidden),
                nn.Tanh(),
                nn.Linear(hidden, hidden),
                nn.Tanh(),
                nn.Linear(hidden, 1),
            )
        self.to(policy.x.device)

    def logits(self, state: torch.Tensor, memory: torch.Tensor, session: int) -> torch.Tensor:
        """state [..., B, S], memory [B, m] -> [..., B, M] (``session`` is not read here)."""
        B = memory.shape[0]
        params = {k: v.expand(B, *v.shape) for k, v in self.actor.items()}
        params["w0"] = params["w0"] + self.read_memory(memory)
        return self.policy.logits(state, params)

    def value(self, state: torch.Tensor, memory: torch.Tensor, session: int) -> torch.Tensor:
        memory = memory.expand(*state.shape[:-1], memory.shape[-1])
        progress = torch.full_like(state[..., :1], session / self.sessions)
        return self.critic(torch.cat([state, memory, progress], dim=-1))[..., 0]

    def remember(self, memory: torch.Tensor, session_end: torch.Tensor) -> torch.Tensor:
        """The memory for the user's next session; with ``carry_memory=False`` (the ablation that
        measures what the memory is worth) every session starts from an empty one."""
        if not self.carry_memory:
            return torch.zeros_like(memory)
        return self.cell(session_end, memory)


class RL2Agent(TrialAgent):
    """RL² serving users: memory wiped when a new user arrives, updated after each session."""

    def __init__(self, name: str, network: RL2Network):
        self.name, self.network = name, network

    def begin(self, cohorts: torch.Tensor) -> None:
        self.session = 0
        memory = torch.zeros(len(cohorts), self.network.memory_size, device=cohorts.device)
        self.memory = reset_memory(memory, torch.ones_like(cohorts, dtype=torch.bool))

    @torch.no_grad()
    def logits(self, state: torch.Tensor) -> torch.Tensor:
        return self.network.logits(state, self.memory, self.session)

    @torch.no_grad()
    def end_session(self, session: Session) -> None:
        self.memory = self.network.remember(self.memory, session.final_state)
        self.session += 1


def trial_gae(
    rewards: torch.Tensor, values: torch.Tensor, live: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lesson 05's :func:`~recrl_lib.agents.ppo.gae` over each row's *live* steps, in order,
    across the sessions of the trial: a session's end is not the end of the task (the same user
    comes back), only the trial's last live step is terminal. All [T, B]; steps that were not
    live (after a session ended early) are skipped and get advantage 0."""
    order = torch.argsort((~live).to(torch.int8), dim=0, stable=True)  # live steps first
    r, v = rewards.gather(0, order), values.gather(0, order)
    t = torch.arange(len(live), device=live.device)[:, None]
    end = t >= live.sum(0, keepdim=True) - 1
    next_v = torch.cat([v[1:], torch.zeros_like(v[:1])])
    advantages, _ = gae(r, v, next_v, end, end, gamma, lam)
    advantages = torch.zeros_like(advantages).scatter(0, order, advantages) * live
    return advantages, advantages + values


def train_rl2(
    network: RL2Network,
    policy: SessionPolicy,
    sim: UserSimulator,
    tasks: CohortTasks,
    config: PPOConfig,
    *,
    iterations: int = 100,
    progress: bool = True,
) -> pd.DataFrame:
    """PPO (lesson 05) on whole trials of ``network.sessions`` sessions of the training cohorts'
    users, ``sim.batch_size`` users per rollout. Minibatches are sets of users, and each update
    re-runs the memory over their sessions, so the gradient reaches the GRU through every
    session it remembers. From ``config`` it uses gamma, gae_lambda, lr (constant),
    update_epochs, n_minibatches, clip_coef, value_clip, vf_coef, ent_coef, max_grad_norm,
    normalize_advantages and seed; the rollout is the trial, so num_steps, whole_sessions,
    annealing and the KL stop do not apply, and a config that sets them is refused. The memory
    feeds the actor and the critic alike. Returns the history of per-session returns."""
    defaults = PPOConfig()
    unused = [
        name
        for name, applies in [
            ("num_steps", config.num_steps != defaults.num_steps),
            ("whole_sessions", config.whole_sessions),
            ("anneal_lr with total_steps", config.anneal_lr and config.total_steps is not None),
            ("target_kl", config.target_kl is not None),
            ("use_critic=False", not config.use_critic),
        ]
        if applies
    ]
    if unused:
        raise ValueError(
            f"train_rl2 does not use {', '.join(unused)} (its rollout is one trial, its lr "
            "constant, with no KL stop): leave num_steps and whole_sessions at their defaults, "
            "total_steps=None, target_kl=None, and use_critic=True (its critic reads the memory)"
        )
    generator = torch.Generator(device=sim.device).manual_seed(config.seed)
    sim.generator.manual_seed(config.seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, eps=1e-5)
    K, B, history = network.sessions, sim.batch_size, []
    for iteration in tqdm(range(iterations), disable=not progress, desc="RL²"):
        # collect one trial per user (rollout = K sessions, the memory carried between them)
        users, labels = tasks.sample(B, tasks.train_cohorts, generator)
        agent = RL2Agent("RL²", network)
        _, played = run_trial(sim, policy, agent, users, labels, K, generator)
        trial = {k: torch.cat([getattr(s, k) for s in played]) for k in STEP_FIELDS}
        ends = torch.stack([s.final_state for s in played])  # [K, B, S]
        with torch.no_grad():
            memories = _memories(network, ends)
            values = torch.cat(
                [network.value(s.states, m, k) for k, (s, m) in enumerate(zip(played, memories))]
            )
        advantages, returns = trial_gae(
            trial["rewards"], values, trial["live"], config.gamma, config.gae_lambda
        )
        # update: epochs of minibatches of users
        for _ in range(config.update_epochs):
            for rows in torch.randperm(B, generator=generator, device=sim.device).chunk(
                config.n_minibatches
            ):
                memories = _memories(network, ends[:, rows])
                states = trial["states"][:, rows].chunk(K)  # session k's steps, [T, b, S]
                logits = torch.cat(
                    [network.logits(s, memories[k], k) for k, s in enumerate(states)]
                )
                new_values = torch.cat(
                    [network.value(s, memories[k], k) for k, s in enumerate(states)]
                )
                log_probs, entropy = log_probs_and_entropy(logits, trial["valid"][:, rows])
                chosen = log_probs.gather(-1, trial["actions"][:, rows, None])[..., 0]
                live = trial["live"][:, rows]
                adv = advantages[:, rows]
                if config.normalize_advantages:
                    mean = adv[live].mean()
                    adv = (adv - mean) / (adv[live].std() + 1e-8) * live
                loss, _ = ppo_loss(
                    chosen.flatten(),
                    trial["log_probs"][:, rows].flatten(),
                    adv.flatten(),
                    new_values.flatten(),
                    values[:, rows].flatten(),
                    returns[:, rows].flatten(),
                    entropy.flatten(),
                    clip_coef=config.clip_coef,
                    value_clip=config.value_clip,
                    vf_coef=config.vf_coef,
                    ent_coef=config.ent_coef,
                    weights=live.flatten(),
                )
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"RL² loss is {loss.item()} at iteration {iteration}")
                optimizer.zero_grad()
                loss.backward()
                if config.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(network.parameters(), config.max_grad_norm)
                optimizer.step()
        history += [
            {"iteration": iteration, "session": k + 1, "return": s.returns.mean().item()}
            for k, s in enumerate(played)
        ]
    return pd.DataFrame(history)


def _memories(network: RL2Network, ends: torch.Tensor) -> list[torch.Tensor]:
    """The memory each session was played with: m_1 = 0, m_{k+1} = GRU(end of session k, m_k)."""
    memory = ends.new_zeros(ends.shape[1], network.memory_size)
    memories = [memory]
    for end in ends[:-1]:
        memory = network.remember(memory, end)
        memories.append(memory)
    return memories


# ----------------------------------------------------------------------------- 7. trials


def run_trial(
    sim: UserSimulator,
    policy: SessionPolicy,
    agent: TrialAgent,
    users: torch.Tensor,
    cohorts: torch.Tensor,
    sessions: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, list[Session]]:
    """``sessions`` sessions of the users [B, D] (a new user per row), served by ``agent``.

    Returns (clicks per row and session [B, K], the K played sessions).
    """
    sim.reset(user_vectors=users)
    cohorts = cohorts.to(sim.device)
    agent.begin(cohorts if agent.oracle else torch.full_like(cohorts, -1))  # hidden: oracles only
    played = []
    for k in range(sessions):
        if k:
            sim.new_session()
        played.append(play_session(sim, policy, agent.logits, generator))
        agent.end_session(played[-1])
    return torch.stack([s.returns for s in played], dim=1), played


def adaptation_curves(
    sim: UserSimulator,
    policy: SessionPolicy,
    agents: list[TrialAgent],
    users: torch.Tensor,
    cohorts: torch.Tensor,
    sessions: int,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """Every agent on the same users with the same random numbers: one row per (agent, user,
    session) with the session's ``return`` (clicks)."""
    frames = []
    for agent in agents:
        generator = torch.Generator(device=sim.device).manual_seed(seed)
        sim.generator.manual_seed(seed)
        returns, _ = run_trial(sim, policy, agent, users, cohorts, sessions, generator)
        frame = pd.DataFrame(returns.cpu().numpy(), columns=range(1, sessions + 1))
        frame = frame.rename_axis("user").reset_index()
        frame = frame.melt(id_vars="user", var_name="session", value_name="return")
        frames.append(frame.assign(policy=agent.name, cohort=cohorts.cpu().numpy()[frame["user"]]))
    return pd.concat(frames, ignore_index=True)


def shown_by_owner(played: list[Session], owner: torch.Tensor, n_owners: int) -> torch.Tensor:
    """What each session showed: [K, B, n_owners], the share of row b's live steps in session k
    that showed an item of each owner group (``owner`` [M]: a group per catalogue position, e.g.
    the cohort whose favourite it is; −1 for none). A row's shares sum to at most 1."""
    if owner.shape != played[0].valid.shape[-1:] or owner.max() >= n_owners:
        raise ValueError(
            f"owner must be [M] = {tuple(played[0].valid.shape[-1:])} in -1..{n_owners - 1}"
        )
    shares = []
    for session in played:
        groups = owner[session.actions]  # [T, B]
        counts = torch.stack([((groups == g) & session.live).sum(0) for g in range(n_owners)], -1)
        shares.append(counts / session.live.sum(0).clamp(min=1)[:, None])
    return torch.stack(shares)
