"""REINFORCE from logs, with the off-policy and top-K corrections of Chen et al. (2019),
"Top-K Off-Policy Correction for a REINFORCE Recommender System" (YouTube).

Read top to bottom:

1. **The corrections**, as pure functions. Logged sessions were written by a behaviour policy β,
   not by the policy π we train. The REINFORCE gradient E_π[G ∇log π(a|s)] is re-weighted to
   data from β with the importance weight w = π(a|s) / β(a|s) of the *decision* (the ratio of
   the state distributions is dropped: the paper's first-order approximation, biased but with
   far less variance), capped at c. A recommender that shows K items sampled from π shows a
   with probability α(a) = 1 − (1 − π(a))^K, whose gradient adds the **top-K multiplier**
   λ_K(a) = K (1 − π(a))^(K−1): near K for a rare item, near 0 for an item π already shows.
2. **Small worlds with known answers**: a softmax over N items trained by REINFORCE on samples
   from β (no state), :func:`train_bandit`.
3. **The recommender**: :class:`LogPolicyNetwork` (the state from the history encoder, π's
   logits = state · item vector, and a **behaviour head** β̂ on the same state with its gradient
   stopped, trained on every logged item), :func:`observations_from_log` (the state the
   simulator showed at each logged step, rebuilt from the log), :class:`LogREINFORCE` (the
   training loop) and Boltzmann top-K serving (:func:`boltzmann_top_k`).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from tqdm.auto import tqdm

from recrl_lib.agents.baselines import Observation, Policy
from recrl_lib.agents.ppo import log_probs_and_entropy, returns_to_go
from recrl_lib.agents.session import ItemMask, SessionTrunk
from recrl_lib.encoders.history import ItemTable
from recrl_lib.envs.simulator import SimulatorConfig, session_observation

# ----------------------------------------------------------------------------- 1. corrections


def topk_multiplier(pi: torch.Tensor, k: int) -> torch.Tensor:
    """λ_K = K (1 − π)^(K−1), elementwise: d/dπ of 1 − (1 − π)^K, the chance that K draws
    from π show the item at least once. λ_1 = 1 (no change); λ_K(0) = K; λ_K(1) = 0."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int (items shown), got {k!r}")
    return k * (1 - pi) ** (k - 1)


def correction_weights(
    pi: torch.Tensor,
    beta: torch.Tensor,
    *,
    off_policy: bool = True,
    cap: float | None = None,
    top_k: int | None = None,
) -> torch.Tensor:
    """The factor in front of G ∇log π(a|s) for each logged decision, without gradient:
    (min(π/β, cap) if ``off_policy`` else 1) × (λ_K(π) if ``top_k`` else 1).

    pi, beta: [n] probabilities of the logged items under π and β (β > 0)."""
    pi, beta = pi.detach(), beta.detach()
    if (beta <= 0).any():
        raise ValueError(
            "a logged item has behaviour probability 0: β must be > 0 for every logged item"
        )
    if cap is not None and cap <= 0:
        raise ValueError(f"cap must be > 0 (e.g. e**3, the paper's), got {cap}")
    weight = pi / beta if off_policy else torch.ones_like(pi)
    if cap is not None:
        weight = weight.clamp(max=cap)
    if top_k is not None:
        weight = weight * topk_multiplier(pi, top_k)
    return weight


def reinforce_loss(
    log_pi: torch.Tensor,
    returns: torch.Tensor,
    beta: torch.Tensor,
    *,
    off_policy: bool = True,
    cap: float | None = None,
    top_k: int | None = None,
) -> torch.Tensor:
    """−mean_i[ w_i · G_i · log π(a_i|s_i) ], with w from :func:`correction_weights`.

    log_pi [n]: log π of the logged items (with gradient); returns [n]: discounted returns
    G_t = Σ_k γ^k r_{t+k} from the log; beta [n]: β(a_i|s_i), logged or learned."""
    if not (log_pi.shape == returns.shape == beta.shape) or log_pi.dim() != 1:
        shapes = [tuple(x.shape) for x in (log_pi, returns, beta)]
        raise ValueError(f"log_pi, returns and beta must all be [n], got {shapes}")
    weight = correction_weights(log_pi.exp(), beta, off_policy=off_policy, cap=cap, top_k=top_k)
    return -(weight * returns.detach() * log_pi).mean()


# ----------------------------------------------------------------------------- 2. small worlds


def train_bandit(
    rewards: torch.Tensor,
    behaviour: torch.Tensor,
    *,
    off_policy: bool = True,
    cap: float | None = None,
    top_k: int | None = None,
    steps: int = 2000,
    batch: int = 256,
    lr: float = 0.05,
    seed: int = 0,
) -> torch.Tensor:
    """A softmax policy π = softmax(θ) over N items (no state), trained by REINFORCE on items
    drawn from ``behaviour`` [N] with reward ``rewards`` [N], by SGD on θ (starting at 0).

    Returns π after every step, [steps + 1, N]. The known answers: without the off-policy
    correction π drifts toward β·r / Σ β·r (the fixed point of E_β[r ∇log π] = 0); with it,
    toward the best item; with the top-K correction it keeps mass on the runners-up."""
    if rewards.shape != behaviour.shape or rewards.dim() != 1:
        raise ValueError("rewards and behaviour must both be [N]")
    generator = torch.Generator().manual_seed(seed)
    theta = torch.zeros(len(rewards), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([theta], lr=lr)
    rewards, behaviour = rewards.double(), behaviour.double()
    history = [torch.softmax(theta.detach(), 0)]
    for _ in range(steps):
        items = torch.multinomial(behaviour, batch, replacement=True, generator=generator)
        log_pi = torch.log_softmax(theta, 0)[items]
        loss = reinforce_loss(
            log_pi, rewards[items], behaviour[items], off_policy=off_policy, cap=cap, top_k=top_k
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(torch.softmax(theta.detach(), 0))
    return torch.stack(history)


# ----------------------------------------------------------------------------- 3. recommender


def observations_from_log(
    log: dict[str, torch.Tensor], rows: torch.Tensor, steps: torch.Tensor, config: SimulatorConfig
) -> Observation:
    """What the simulator showed before step ``steps[i]`` of logged session ``rows[i]``,
    rebuilt from the log (items shown, clicks, ratings) -> an observation with batch [n].

    ``log`` as :func:`~recrl_lib.agents.log_sessions` returns it (``actions``, ``rewards``,
    ``ratings``, each [B, T]); the session's first step sees an empty history."""
    if config.slate_size != 1 or config.observe_features or config.observe_user:
        raise ValueError(
            "observations_from_log rebuilds single-item sessions without user features or ids: "
            "build the config with slate_size=1, observe_features=False, observe_user=False"
        )
    H, horizon = config.observed_steps, config.horizon
    items, clicks = log["actions"][rows], log["rewards"][rows]  # [n, T]
    ratings = log["ratings"][rows] / 5 * clicks
    T = items.shape[1]
    position = steps[:, None] - H + torch.arange(H, device=items.device)  # [n, H], oldest first
    mask = position >= 0
    index = position.clamp(min=0, max=T - 1)
    before = torch.arange(T, device=items.device) < steps[:, None]  # [n, T]: steps already taken
    n_clicks = (clicks * before).sum(1)
    totals = torch.stack([n_clicks, steps - n_clicks, (ratings * before).sum(1)], 1)
    return session_observation(
        items.gather(1, index),
        clicks.gather(1, index),
        ratings.gather(1, index),
        mask,
        steps,
        totals,
        horizon,
    )


class LogPolicyNetwork(ItemMask):
    """π and the behaviour head β̂ from one observed session.

    state:  s = f(obs) [B, dim] (history encoder + MLP, as PPO's actor)
    π:      logits(s, a) = s · x_a                       over valid items        [B, N]
    β̂:      logits(s, a) = stop_gradient(s) · u_a + b_a  its own item vectors     [B, N]

    β̂'s loss (the cross-entropy of the logged items) trains only u and b: the gradient is
    stopped at s, so estimating the logger never bends the state π reads (the paper's choice).
    """

    def __init__(self, items: ItemTable, *, history: str = "mean", window: int = 10):
        super().__init__(items.n_items)
        self.items = items
        self.state = SessionTrunk(items, history, window, 0, 128, items.dim, 0.01)
        self.behaviour_vectors = nn.Parameter(torch.zeros(items.n_items, items.dim))
        self.behaviour_bias = nn.Parameter(torch.zeros(items.n_items))

    @property
    def n_actions(self) -> int:
        return self.items.n_items

    def forward(self, obs: Observation) -> tuple[torch.Tensor, torch.Tensor]:
        """(π's logits [B, N], β̂'s logits [B, N]), before masking."""
        table = self.items.all()
        s = self.state(obs, table)
        return s @ table.T, s.detach() @ self.behaviour_vectors.T + self.behaviour_bias

    def logits(self, obs: Observation) -> torch.Tensor:
        return self.forward(obs)[0]


@dataclasses.dataclass
class LogREINFORCEConfig:
    """How :class:`LogREINFORCE` learns from a log. ``off_policy=False`` is plain REINFORCE on
    the logged sessions (it learns to imitate the logger's choices weighted by return)."""

    off_policy: bool = True  # weight by π/β
    cap: float | None = None  # cap on π/β (the paper: e**3)
    top_k: int | None = None  # the top-K multiplier for a policy that shows K items
    propensity: str = "learned"  # β from the behaviour head ("learned") or the log ("logged")
    gamma: float = 0.9
    lr: float = 1e-3
    behaviour_lr: float = 1e-2  # the head's own step size: it must track β from the start
    batch_size: int = 512
    epochs: int = 2
    seed: int = 0

    def __post_init__(self):
        if self.propensity not in ("learned", "logged"):
            raise ValueError(f"propensity must be 'learned' or 'logged', got {self.propensity!r}")
        if self.top_k is not None:
            topk_multiplier(torch.zeros(1), self.top_k)  # checks k


class LogREINFORCE:
    """Trains a :class:`LogPolicyNetwork` on logged sessions; see the module docstring."""

    def __init__(
        self,
        network: LogPolicyNetwork,
        config: LogREINFORCEConfig | None = None,
        *,
        device: torch.device | str = "cpu",
    ):
        self.config = config or LogREINFORCEConfig()
        self.device = torch.device(device)
        self.net = network.to(self.device)
        head = [self.net.behaviour_vectors, self.net.behaviour_bias]
        rest = [p for p in self.net.parameters() if all(p is not h for h in head)]
        self.optimizer = torch.optim.Adam(
            [{"params": rest}, {"params": head, "lr": self.config.behaviour_lr}],
            lr=self.config.lr,
            eps=1e-5,
        )
        self.generator = torch.Generator().manual_seed(self.config.seed)

    @torch.no_grad()
    def warm_start_behaviour(self, log: dict[str, torch.Tensor]) -> None:
        """Start β̂ at the log's item frequencies: b_a = log((count_a + 1) / (n + N)), u = 0.
        Without it the head would begin uniform over 1,682 items and weight every decision by
        about N·π until it caught up."""
        actions = log["actions"][log["alive"]].to(self.device)
        counts = torch.bincount(actions, minlength=self.net.n_actions).float()
        self.net.behaviour_bias.copy_(torch.log((counts + 1) / (counts.sum() + len(counts))))
        self.net.behaviour_vectors.zero_()

    def fit(
        self, log: dict[str, torch.Tensor], sim_config: SimulatorConfig, *, progress: bool = True
    ) -> list[dict[str, float]]:
        """``epochs`` passes over every logged step, in minibatches; returns one row per epoch
        (mean policy loss, behaviour head cross-entropy, mean weight). The behaviour head starts
        at the log's item frequencies (:meth:`warm_start_behaviour`)."""
        c = self.config
        log = {k: v.to(self.device) for k, v in log.items()}
        self.warm_start_behaviour(log)
        returns = returns_to_go(log["rewards"].T, c.gamma).T  # G_t, [B, T] like the log
        rows, steps = log["alive"].nonzero(as_tuple=True)  # every logged decision
        history = []
        for _ in tqdm(range(c.epochs), desc="REINFORCE from logs", disable=not progress):
            order = torch.randperm(len(rows), generator=self.generator).to(self.device)
            sums = {"policy loss": 0.0, "behaviour cross-entropy": 0.0, "mean weight": 0.0}
            batches = order.split(c.batch_size)
            for batch in batches:
                r, t = rows[batch], steps[batch]
                obs = observations_from_log(log, r, t, sim_config)
                actions = log["actions"][r, t]
                pi_logits, beta_logits = self.net(obs)
                valid = self.net.valid_actions(obs)
                log_pi, _ = log_probs_and_entropy(pi_logits, valid)
                log_beta_hat, _ = log_probs_and_entropy(beta_logits, valid)
                log_pi_a = log_pi.gather(1, actions[:, None])[:, 0]
                log_beta_a = log_beta_hat.gather(1, actions[:, None])[:, 0]
                beta = log_beta_a.exp() if c.propensity == "learned" else log["behaviour_p"][r, t]
                policy_loss = reinforce_loss(
                    log_pi_a, returns[r, t], beta, off_policy=c.off_policy, cap=c.cap, top_k=c.top_k
                )
                behaviour_loss = -log_beta_a.mean()  # the head learns β from every logged item
                self.optimizer.zero_grad()
                (policy_loss + behaviour_loss).backward()
                self.optimizer.step()
                weight = correction_weights(
                    log_pi_a.exp(), beta, off_policy=c.off_policy, cap=c.cap, top_k=c.top_k
                )
                sums["policy loss"] += policy_loss.item()
                sums["behaviour cross-entropy"] += behaviour_loss.item()
                sums["mean weight"] += weight.mean().item()
            history.append({k: v / len(batches) for k, v in sums.items()})
        return history

    @torch.no_grad()
    def probabilities_on_log(
        self, log: dict[str, torch.Tensor], sim_config: SimulatorConfig, batch_size: int = 2048
    ) -> dict[str, torch.Tensor]:
        """π(a|s), β̂(a|s) and the logged β(a|s) of every logged decision, each [n] on the CPU:
        how far the policy moved from the logger, and how well the head estimates it."""
        log = {k: v.to(self.device) for k, v in log.items()}
        rows, steps = log["alive"].nonzero(as_tuple=True)
        out = {"pi": [], "beta_hat": [], "beta": []}
        for batch in torch.arange(len(rows), device=self.device).split(batch_size):
            r, t = rows[batch], steps[batch]
            obs = observations_from_log(log, r, t, sim_config)
            pi_logits, beta_logits = self.net(obs)
            valid = self.net.valid_actions(obs)
            actions = log["actions"][r, t][:, None]
            out["pi"].append(log_probs_and_entropy(pi_logits, valid)[0].gather(1, actions)[:, 0])
            out["beta_hat"].append(
                log_probs_and_entropy(beta_logits, valid)[0].gather(1, actions)[:, 0]
            )
            out["beta"].append(log["behaviour_p"][r, t])
        result = {k: torch.cat(v).cpu() for k, v in out.items()}
        result["pi"], result["beta_hat"] = result["pi"].exp(), result["beta_hat"].exp()
        return result

    def policy(self, name: str = "REINFORCE from logs") -> Policy:
        """The greedy policy in the course's protocol (its most probable valid item)."""
        return Policy(name, self.net.logits, self.net.n_actions, valid=self.net.valid_actions)


def boltzmann_top_k(
    logits: torch.Tensor, valid: torch.Tensor, k: int, generator: torch.Generator
) -> torch.Tensor:
    """K distinct valid items drawn from softmax(logits) without replacement -> [B, K]:
    the Gumbel-top-k trick (the K largest of logits + Gumbel noise). Serving by sampling keeps
    showing the runners-up that the top-K correction kept probability on. (λ_K assumes K
    draws *with* replacement; serving without replacement is the paper's approximation.)"""
    if (valid.sum(1) < k).any():
        raise ValueError(f"a row has fewer than k = {k} valid items to show")
    u = torch.rand(logits.shape, generator=generator, device=logits.device)
    noisy = logits - torch.log(-torch.log(u))
    return noisy.masked_fill(~valid, -float("inf")).topk(k, dim=1).indices
