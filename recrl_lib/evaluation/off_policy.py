"""Off-policy evaluation: the value of a target policy π from data logged by another, β.

A log holds, for each logged decision, the reward r, the behaviour propensity β(a|x) of the
action that was logged (recorded when it was logged) and the target's probability π(a|x) of
the same action. With w = π(a|x) / β(a|x):

=========================  =============================================================
inverse propensity (IPS)   V̂ = (1/n) Σ w_i r_i                          unbiased
clipped IPS                V̂ = (1/n) Σ min(w_i, c) r_i                  biased down, less spread
self-normalised (SNIPS)    V̂ = Σ w_i r_i / Σ w_i                        biased, in [min r, max r]
direct method (DM)         V̂ = (1/n) Σ_a π(a|x_i) r̂(x_i, a)            as good as the model r̂
doubly robust (DR)         V̂ = DM + (1/n) Σ w_i (r_i − r̂(x_i, a_i))    unbiased if β is right
=========================  =============================================================

For sessions of H steps (rewards r_t, γ^t discount), the cumulative weight ρ_t = Π_{t'≤t} w_t':

- trajectory IS: V̂ = (1/n) Σ_i ρ_{i,H−1} Σ_t γ^t r_{i,t};
- per-decision IS (Precup et al., 2000): V̂ = (1/n) Σ_i Σ_t γ^t ρ_{i,t} r_{i,t} — a reward
  only needs the weights of the decisions before it, so the variance is lower;
- weighted (self-normalised) per-decision IS: V̂ = Σ_t γ^t Σ_i ρ_{i,t} r_{i,t} / Σ_i ρ_{i,t}.

A session that ended early stays ended: its later steps have reward 0 and weight 1 (``alive``
False). For slates, the pseudo-inverse estimator (Swaminathan et al., 2017) assumes the
slate's reward is a sum over slots and needs only slot-level probabilities.

Every estimator refuses a logged action with propensity 0 (IPS cannot be computed: the
logging policy never could have logged it) and a probability outside [0, 1].
"""

from __future__ import annotations

import torch


def _as_double(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def importance_weights(target_p, behaviour_p) -> torch.Tensor:
    """w = π(a|x) / β(a|x) for each logged action (same shape as the inputs)."""
    target_p, behaviour_p = _as_double(target_p), _as_double(behaviour_p)
    if target_p.shape != behaviour_p.shape:
        raise ValueError(f"shapes differ: target {target_p.shape}, behaviour {behaviour_p.shape}")
    if (behaviour_p <= 0).any():
        raise ValueError(
            "a logged action has behaviour propensity 0, so its importance weight is undefined: "
            "record the probability with which the logging policy chose each action (it must "
            "be > 0 for every action it logged)"
        )
    for name, p in (("target", target_p), ("behaviour", behaviour_p)):
        if (p > 1).any() or (p < 0).any() or p.isnan().any():
            raise ValueError(f"{name} probabilities must lie in [0, 1]")
    return target_p / behaviour_p


def _rewards_like(rewards, weights: torch.Tensor) -> torch.Tensor:
    rewards = _as_double(rewards)
    if rewards.shape != weights.shape or rewards.numel() == 0:
        shapes = f"{tuple(rewards.shape)} vs {tuple(weights.shape)}"
        raise ValueError(f"rewards must match the propensities in shape: {shapes}")
    return rewards


def ips(rewards, target_p, behaviour_p) -> float:
    """Inverse propensity scoring: mean of w · r over the n logged decisions [n]."""
    w = importance_weights(target_p, behaviour_p)
    return float((w * _rewards_like(rewards, w)).mean())


def clipped_ips(rewards, target_p, behaviour_p, cap: float) -> float:
    """IPS with every weight capped at ``cap`` (> 0): less variance, bias toward 0."""
    if cap <= 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    w = importance_weights(target_p, behaviour_p)
    return float((w.clamp(max=cap) * _rewards_like(rewards, w)).mean())


def snips(rewards, target_p, behaviour_p) -> float:
    """Self-normalised IPS: Σ w r / Σ w (NaN if every weight is 0)."""
    w = importance_weights(target_p, behaviour_p)
    total = w.sum()
    return float((w * _rewards_like(rewards, w)).sum() / total) if total > 0 else float("nan")


def direct_method(model_under_target) -> float:
    """DM: the mean over logged contexts of r̂(x, π) = Σ_a π(a|x) r̂(x, a), given as [n]."""
    values = _as_double(model_under_target)
    if values.dim() != 1 or values.numel() == 0:
        raise ValueError(f"model_under_target must be a non-empty [n] vector, got {values.shape}")
    return float(values.mean())


def doubly_robust(rewards, target_p, behaviour_p, model_on_logged, model_under_target) -> float:
    """DR: DM plus the IPS-weighted error of the model on the logged action.

    model_on_logged [n]: r̂(x_i, a_i); model_under_target [n]: Σ_a π(a|x_i) r̂(x_i, a)."""
    w = importance_weights(target_p, behaviour_p)
    r = _rewards_like(rewards, w)
    on_logged, under_target = _as_double(model_on_logged), _as_double(model_under_target)
    if on_logged.shape != w.shape or under_target.shape != w.shape:
        raise ValueError("the model's values must have one entry per logged decision")
    return float((under_target + w * (r - on_logged)).mean())


def _session_weights(rewards, target_p, behaviour_p, alive, gamma: float):
    """(discounted rewards [n, H], cumulative weights ρ [n, H]) with ended steps neutral."""
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    alive = torch.as_tensor(alive, dtype=torch.bool)
    target_p, behaviour_p = _as_double(target_p), _as_double(behaviour_p)
    if target_p.dim() != 2 or alive.shape != target_p.shape:
        raise ValueError(f"session arrays must all be [n, H]; alive is {tuple(alive.shape)}")
    # After a session ends nothing is logged: weight 1, reward 0 (it was checked as such).
    one = torch.ones_like(target_p)
    w = importance_weights(torch.where(alive, target_p, one), torch.where(alive, behaviour_p, one))
    r = _rewards_like(rewards, w)
    if (r[~alive] != 0).any():
        raise ValueError("a step after the session ended has a non-zero reward")
    discount = gamma ** torch.arange(r.shape[1], dtype=torch.float64, device=r.device)
    return r * discount, w.cumprod(dim=1)


def trajectory_is(rewards, target_p, behaviour_p, alive, gamma: float = 1.0) -> float:
    """Whole-session IS: mean of ρ_{H−1} · Σ_t γ^t r_t. Arrays [n, H]."""
    r, rho = _session_weights(rewards, target_p, behaviour_p, alive, gamma)
    return float((rho[:, -1] * r.sum(1)).mean())


def per_decision_is(rewards, target_p, behaviour_p, alive, gamma: float = 1.0) -> float:
    """Per-decision IS: mean of Σ_t γ^t ρ_t r_t. Arrays [n, H]."""
    r, rho = _session_weights(rewards, target_p, behaviour_p, alive, gamma)
    return float((rho * r).sum(1).mean())


def weighted_per_decision_is(rewards, target_p, behaviour_p, alive, gamma: float = 1.0) -> float:
    """Self-normalised per-decision IS: Σ_t γ^t (Σ_i ρ_{i,t} r_{i,t} / Σ_i ρ_{i,t}). [n, H]."""
    r, rho = _session_weights(rewards, target_p, behaviour_p, alive, gamma)
    total = rho.sum(0)
    step_values = torch.where(total > 0, (rho * r).sum(0) / total.clamp(min=1e-300), 0.0)
    return float(step_values.sum())


def independent_slots_gamma(marginals) -> torch.Tensor:
    """Γ = E_μ[1_s 1_sᵀ] [L·N, L·N] for a logging policy that fills each of L slots
    independently from its own distribution ``marginals`` [L, N] (rows sum to 1).

    1_s is the slate's indicator over (slot, item) pairs, index ``slot * N + item``."""
    p = _as_double(marginals)
    if p.dim() != 2 or (p < 0).any() or not torch.allclose(p.sum(1), torch.ones_like(p[:, 0])):
        raise ValueError("marginals must be [L, N] with each slot's probabilities summing to 1")
    flat = p.reshape(-1)
    gamma = torch.outer(flat, flat)
    n_slots, n_items = p.shape
    for j in range(n_slots):  # one slot holds one item: within a slot only the diagonal stays
        block = slice(j * n_items, (j + 1) * n_items)
        gamma[block, block] = torch.diag(p[j])
    return gamma


def pseudo_inverse(rewards, slates, target_marginals, behaviour_gamma) -> float:
    """The pseudo-inverse estimator for slates (Swaminathan et al., 2017):

        V̂ = (1/n) Σ_i r_i · q_πᵀ Γ_μ^† 1_{s_i},

    rewards [n]: the slate's reward; slates [n, L] long: the logged slates; target_marginals
    [L, N]: q_π(j, a) = P_π(slot j shows a); behaviour_gamma [L·N, L·N]: Γ_μ (e.g.
    :func:`independent_slots_gamma`). Context-free: π and μ are the same for every log row.
    Unbiased when the reward is a sum of per-slot terms; with one slot it is IPS.
    """
    r = _as_double(rewards)
    slates = torch.as_tensor(slates, dtype=torch.long)
    q = _as_double(target_marginals)
    gamma = _as_double(behaviour_gamma)
    n_slots, n_items = q.shape
    if slates.shape != (len(r), n_slots) or gamma.shape != (n_slots * n_items,) * 2:
        raise ValueError(
            f"need slates [n, L={n_slots}] and Γ [{n_slots * n_items}, {n_slots * n_items}], "
            f"got {tuple(slates.shape)} and {tuple(gamma.shape)}"
        )
    if ((slates < 0) | (slates >= n_items)).any():
        raise ValueError(f"slates hold items outside 0..{n_items - 1}")
    slates = slates.to(q.device)
    index = slates + n_items * torch.arange(n_slots, device=q.device)  # [n, L]: positions of 1_s
    shown_p = gamma.diagonal()[index]
    if (shown_p <= 0).any():
        raise ValueError("a logged slate puts an item in a slot where the logging policy cannot")
    coefficients = torch.linalg.pinv(gamma) @ q.reshape(-1)  # Γ^† q (Γ is symmetric)
    return float((r * coefficients[index].sum(1)).mean())


def ridge_reward_model(inputs, rewards, l2: float = 1.0) -> torch.Tensor:
    """A linear reward model r̂(a) = [x_a, 1] · w for the direct method, fitted on the log.

    inputs [n, F]: the features of each logged action; rewards [n]. Minimises
    Σ_i (r_i − [x_i, 1] · w)² + l2 · |w without the intercept|². Returns w [F + 1]: predict
    with ``torch.cat([x, ones], 1) @ w``."""
    x, r = _as_double(inputs), _as_double(rewards)
    r = r.to(x.device)
    if x.dim() != 2 or r.shape != (len(x),) or l2 < 0:
        raise ValueError(f"need inputs [n, F], rewards [n], l2 >= 0; got {x.shape}, {r.shape}")
    design = torch.cat([x, torch.ones_like(x[:, :1])], 1)
    penalty = torch.full((design.shape[1],), float(l2), dtype=x.dtype, device=x.device)
    penalty[-1] = 0.0
    return torch.linalg.solve(design.T @ design + torch.diag(penalty), design.T @ r)
