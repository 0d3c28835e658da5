"""Checks for the course's exercises: a learner's function against the library's reference.

Each ``check_*`` calls the learner's function on random inputs, compares it with the
reference in ``recrl_lib`` and raises ``AssertionError`` with a message that says what is
wrong ("your target bootstraps after a terminated step"). The exercises' visible test cells
call them; :func:`self_check` runs several and prints a pass/fail line per part, for learners
without nbgrader. The edge cases live in the assignments' hidden tests.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from recrl_lib.agents.bandits import linucb_update
from recrl_lib.agents.dqn import n_step_returns, td_target
from recrl_lib.agents.grpo import group_advantages, grpo_loss
from recrl_lib.agents.meta import reptile_update, reset_memory
from recrl_lib.agents.ppo import gae, ppo_loss
from recrl_lib.agents.reinforce_offpolicy import reinforce_loss, topk_multiplier
from recrl_lib.agents.tabular import q_learning_update, sarsa_update
from recrl_lib.encoders.language_model import sequence_log_likelihood
from recrl_lib.envs.genre_mdp import TabularMDP, bellman_backup
from recrl_lib.evaluation.off_policy import ips, snips
from recrl_lib.evaluation.ranking import gini, mean_pairwise_jaccard, ndcg_at_k


def _fail(message: str) -> None:
    raise AssertionError(message)


# ----------------------------------------------------------------------------- exercise 03


def _random_td_case(rng: np.random.Generator) -> dict:
    n_states, n_actions = rng.integers(2, 6, size=2)
    return {
        "q": rng.normal(size=(n_states, n_actions)),
        "state": int(rng.integers(n_states)),
        "action": int(rng.integers(n_actions)),
        "reward": float(rng.normal()),
        "next_state": int(rng.integers(n_states)),
        "next_action": int(rng.integers(n_actions)),
        "terminated": bool(rng.random() < 0.3),
        "alpha": float(rng.uniform(0.05, 1.0)),
        "gamma": float(rng.uniform(0.0, 1.0)),
    }


def _check_td_update(fn: Callable, reference: Callable, on_policy: bool, trials: int, seed: int):
    rng = np.random.default_rng(seed)
    name = "SARSA" if on_policy else "Q-learning"
    for _ in range(trials):
        case = _random_td_case(rng)
        s, a, r = case["state"], case["action"], case["reward"]
        s2, a2 = case["next_state"], case["next_action"]
        terminated, alpha, gamma = case["terminated"], case["alpha"], case["gamma"]
        args = (s, a, r, s2, a2, terminated) if on_policy else (s, a, r, s2, terminated)
        expected, got = case["q"].copy(), case["q"].copy()
        expected_error = reference(expected, *args, alpha=alpha, gamma=gamma)
        returned = fn(got, *args, alpha=alpha, gamma=gamma)
        where = f"(s={s}, a={a}, r={r:.3f}, s'={s2}" + (f", a'={a2}" if on_policy else "")
        where += f", terminated={terminated}, α={alpha:.3f}, γ={gamma:.3f})"
        others = np.ones_like(got, dtype=bool)
        others[s, a] = False
        if not np.allclose(got[others], case["q"][others]):
            _fail(f"your {name} update changed entries other than Q(s, a) {where}")
        if not np.isclose(got[s, a], expected[s, a]):
            if got[s, a] == case["q"][s, a]:
                _fail(
                    f"your {name} update did not change Q(s, a) {where}: update the table q "
                    "in place"
                )
            bootstrap = case["q"][s2, a2] if on_policy else case["q"][s2].max()
            other = case["q"][s2].max() if on_policy else case["q"][s2, a2]
            old = case["q"][s, a]
            if terminated and np.isclose(got[s, a], old + alpha * (r + gamma * bootstrap - old)):
                _fail(
                    f"your target bootstraps after a terminated step {where}: the session "
                    "has no future, so the target is just r"
                )
            if not terminated and np.isclose(got[s, a], old + alpha * (r + gamma * other - old)):
                wanted = "Q(s', a') of the action taken next" if on_policy else "max_a' Q(s', a')"
                _fail(
                    f"your {name} target bootstraps on the wrong next value {where}: "
                    f"it should use {wanted}"
                )
            if np.isclose(got[s, a], r + (0 if terminated else gamma * bootstrap)):
                _fail(f"you replaced Q(s, a) by the target {where}: move it a step α toward it")
            _fail(f"Q(s, a) should become {expected[s, a]:.5f} {where}, yours is {got[s, a]:.5f}")
        if returned is None or not np.isclose(float(returned), expected_error):
            _fail(
                f"return the TD error, target − Q(s, a) before the update: {expected_error:.5f}"
                f" {where}, yours returned {returned!r}"
            )


def check_q_learning_update(fn: Callable, trials: int = 200, seed: int = 0) -> None:
    """``fn(q, state, action, reward, next_state, terminated, *, alpha, gamma) -> TD error``."""
    _check_td_update(fn, q_learning_update, on_policy=False, trials=trials, seed=seed)


def check_sarsa_update(fn: Callable, trials: int = 200, seed: int = 0) -> None:
    """``fn(q, state, action, reward, next_state, next_action, terminated, *, alpha, gamma)``."""
    _check_td_update(fn, sarsa_update, on_policy=True, trials=trials, seed=seed)


def random_mdp(rng: np.random.Generator, n_states: int = 5, n_actions: int = 3) -> TabularMDP:
    """A random MDP with an absorbing terminal last state, for tests."""
    P = rng.random((n_states, n_actions, n_states)) ** 3
    P[-1] = 0.0
    P[-1, :, -1] = 1.0
    P /= P.sum(-1, keepdims=True)
    R_next = rng.normal(size=(n_states, n_actions, n_states))
    R_next[-1] = 0.0
    terminal = np.zeros(n_states, dtype=bool)
    terminal[-1] = True
    return TabularMDP(
        P=P,
        R_next=R_next,
        gamma=float(rng.uniform(0.5, 0.95)),
        terminal=terminal,
        state_names=[f"s{i}" for i in range(n_states)],
        action_names=[f"a{i}" for i in range(n_actions)],
    )


def check_bellman_backup(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(mdp, q) -> T q``, the Bellman optimality backup on a :class:`TabularMDP`."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        mdp = random_mdp(rng, int(rng.integers(2, 7)), int(rng.integers(1, 5)))
        q = rng.normal(size=(mdp.n_states, mdp.n_actions))
        q[mdp.terminal] = 0.0  # a terminal state is worth 0, with or without a special case
        expected, got = bellman_backup(mdp, q), np.asarray(fn(mdp, q.copy()))
        if got.shape != expected.shape:
            _fail(f"T q must have the shape of q, {expected.shape}; yours is {got.shape}")
        if np.allclose(got, expected):
            continue
        if np.allclose(got, mdp.R + mdp.gamma * mdp.P @ q.mean(1)):
            _fail("your backup averages over the next actions: the optimality backup takes max_a'")
        if np.allclose(got, mdp.R + mdp.P @ q.max(1)):
            _fail("your backup forgets the discount γ on the next state's value")
        if np.allclose(got, mdp.R + mdp.gamma * q.max(1)[:, None]):
            _fail(
                "your backup uses the current state's value: weigh the *next* states by P(s'|s,a)"
            )
        _fail("T q differs from R + γ Σ_s' P(s'|s,a) max_a' q(s',a') on a random MDP")


# ----------------------------------------------------------------------------- exercise 04


def _random_slice(rng: np.random.Generator, batch: int, n: int):
    rewards = torch.tensor(rng.normal(size=(batch, n)), dtype=torch.float32)
    done = torch.tensor(rng.random((batch, n)) < 0.3)
    terminated = done & torch.tensor(rng.random((batch, n)) < 0.5)
    return rewards, done, terminated


def check_n_step_returns(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(rewards, done, terminated, gamma) -> (G, discount, last)`` on [B, n] slices."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        n, gamma = int(rng.integers(1, 6)), float(rng.uniform(0.5, 0.99))
        rewards, done, terminated = _random_slice(rng, 64, n)
        G, discount, last = n_step_returns(rewards, done, terminated, gamma)
        got = fn(rewards.clone(), done.clone(), terminated.clone(), gamma)
        if not isinstance(got, tuple) or len(got) != 3:
            _fail("return three tensors: (G, discount, last)")
        got_G, got_discount, got_last = (torch.as_tensor(x) for x in got)
        ended = done.any(1)
        if not torch.equal(got_last.long(), last):
            _fail(
                "`last` should be the index of the step the return ends with: the first done "
                "step, or n − 1 if the session goes on"
            )
        if not torch.allclose(got_G.float(), G, atol=1e-5):
            keeps_summing = (rewards * gamma ** torch.arange(n)).sum(1)
            if torch.allclose(got_G.float()[ended], keeps_summing[ended], atol=1e-5):
                _fail(
                    "your return keeps summing rewards after the session ended: stop at the "
                    "first done step (the next rewards belong to another user's session)"
                )
            _fail(f"G should be Σ γ^k r_k up to the first done step (n={n}, γ={gamma:.3f})")
        if not torch.allclose(got_discount.float(), discount, atol=1e-6):
            stopped = terminated.gather(1, last[:, None]).squeeze(1)
            cut = done.gather(1, last[:, None]).squeeze(1) & ~stopped
            if (got_discount.float()[stopped] != 0).any():
                _fail(
                    "your discount is not 0 after a terminated step: a terminated session has "
                    "no next state to bootstrap from"
                )
            if cut.any() and not torch.allclose(got_discount.float()[cut], discount[cut]):
                _fail(
                    "after a truncated (cut) step the session had a future: bootstrap with "
                    "discount γ^m from that step's next observation"
                )
            _fail("discount should be γ^m, m the number of rewards summed (0 if terminated)")


def check_td_target(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(returns, discount, next_q_online, next_q_target, next_valid, *, double) -> y``."""
    rng = np.random.default_rng(seed)
    for trial in range(trials):
        batch, n_actions = 32, int(rng.integers(2, 8))
        returns = torch.tensor(rng.normal(size=batch), dtype=torch.float32)
        discount = torch.tensor(rng.choice([0.0, 0.9, 0.81], size=batch), dtype=torch.float32)
        online = torch.tensor(rng.normal(size=(batch, n_actions)), dtype=torch.float32)
        target = torch.tensor(rng.normal(size=(batch, n_actions)), dtype=torch.float32)
        valid = torch.tensor(rng.random((batch, n_actions)) < 0.7)
        valid[torch.arange(batch), torch.tensor(rng.integers(n_actions, size=batch))] = True
        double = bool(trial % 2)
        expected = td_target(returns, discount, online, target, valid, double=double)
        inputs = (returns.clone(), discount.clone(), online.clone(), target.clone(), valid.clone())
        got = torch.as_tensor(fn(*inputs, double=double)).float()
        if torch.allclose(got, expected, atol=1e-5):
            continue
        stopped = discount == 0
        if not torch.allclose(got[stopped], returns[stopped]):
            _fail(
                "your target bootstraps after a terminated step: where discount is 0 the "
                "target is the return alone"
            )
        for other_double, wrong in ((not double, "plain"), (double, "ignoring the valid mask")):
            mask = valid if wrong == "plain" else None
            alternative = td_target(returns, discount, online, target, mask, double=other_double)
            if torch.allclose(got, alternative, atol=1e-5):
                if wrong == "plain":
                    _fail(
                        "double DQN picks a* = argmax of the ONLINE net and scores it with the "
                        "TARGET net; plain DQN takes the target net's max. Yours swapped them"
                        f" (double={double})"
                    )
                _fail(
                    "your target lets a* be an invalid action (a movie already shown): mask "
                    "invalid actions to −inf before the argmax"
                )
        _fail(f"y should be G + discount · Q_target(s', a*) (double={double})")


def check_huber_loss(fn: Callable, trials: int = 30, seed: int = 0) -> None:
    """``fn(prediction, target, delta) -> mean Huber loss`` (a scalar tensor with a gradient)."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        delta = float(rng.uniform(0.2, 2.0))
        prediction = torch.tensor(rng.normal(0, 2, 40), dtype=torch.float32, requires_grad=True)
        target = torch.tensor(rng.normal(0, 2, 40), dtype=torch.float32)
        expected = F.huber_loss(prediction, target, delta=delta)
        got = fn(prediction, target, delta)
        if not torch.is_tensor(got) or got.shape != ():
            _fail("return the mean loss as a scalar tensor (so that .backward() works)")
        if not got.requires_grad:
            _fail(
                "your loss has no gradient: compute it with torch operations on `prediction` "
                "(no .item(), .detach() or NumPy in between)"
            )
        if not torch.allclose(got, expected, atol=1e-5):
            error = (prediction - target).abs()
            if torch.allclose(got, (0.5 * error**2).mean(), atol=1e-5):
                _fail("your loss is quadratic everywhere: beyond |error| > δ it grows linearly")
            _fail(f"the Huber loss is ½e² for |e| ≤ δ and δ(|e| − ½δ) beyond (δ = {delta:.3f})")
        (gradient,) = torch.autograd.grad(got, prediction)
        clipped = (prediction - target).detach().clamp(-delta, delta) / len(prediction)
        if not torch.allclose(gradient, clipped, atol=1e-5):
            _fail("the gradient of the mean Huber loss should be the error clipped to ±δ, / B")


# ----------------------------------------------------------------------------- exercise 05


def random_rollout(rng: np.random.Generator, T: int = 8, E: int = 4) -> dict:
    """Random rewards and values [T, E] with sessions that terminate and sessions that are cut."""
    terminated = torch.tensor(rng.random((T, E)) < 0.2)
    cut = torch.tensor(rng.random((T, E)) < 0.15) & ~terminated
    return {
        "rewards": torch.tensor(rng.normal(size=(T, E)), dtype=torch.float32),
        "values": torch.tensor(rng.normal(size=(T, E)), dtype=torch.float32),
        "next_values": torch.tensor(rng.normal(size=(T, E)), dtype=torch.float32),
        "terminated": terminated,
        "done": terminated | cut,
    }


def check_gae(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(rewards, values, next_values, terminated, done, gamma, lam) -> (advantages,
    returns)``, each [T, E]."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        T, gamma, lam = int(rng.integers(1, 9)), float(rng.uniform(0.5, 1.0)), float(rng.random())
        r = random_rollout(rng, T)
        args = (r["rewards"], r["values"], r["next_values"], r["terminated"], r["done"])
        advantages, returns = gae(*args, gamma, lam)
        got = fn(*(x.clone() for x in args), gamma, lam)
        if not isinstance(got, tuple) or len(got) != 2:
            _fail("return two tensors: (advantages, returns), each [T, E]")
        got_advantages, got_returns = (torch.as_tensor(x).float() for x in got)
        if got_advantages.shape != advantages.shape:
            _fail(f"advantages should be [T, E] = {tuple(advantages.shape)}")
        if not torch.allclose(got_advantages, advantages, atol=1e-5):
            wrong = {
                "your advantages run across the end of a session: where done_t, the recursion "
                "starts again (Â_t = δ_t)": (r["terminated"], torch.zeros_like(r["done"])),
                "your δ bootstraps after a terminated step: a terminated session has no next "
                "state, δ_t = r_t − V(s_t)": (torch.zeros_like(r["done"]), r["done"]),
                "a cut (truncated) session had a future: δ_t still bootstraps from V(s_t+1); "
                "only the recursion stops there": (r["done"], r["done"]),
            }
            for message, (terminated, done) in wrong.items():
                alternative, _ = gae(args[0], args[1], args[2], terminated, done, gamma, lam)
                if torch.allclose(got_advantages, alternative, atol=1e-5):
                    _fail(message)
            _fail(
                f"Â_t = δ_t + γλ(1 − done_t)Â_t+1 with δ_t = r_t + γ(1 − terminated_t)V(s_t+1) − "
                f"V(s_t), Â = 0 after the last step (T={T}, γ={gamma:.3f}, λ={lam:.3f})"
            )
        if not torch.allclose(got_returns, returns, atol=1e-5):
            _fail("returns (the critic's targets) should be advantages + values")


def check_ppo_loss(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(new_log_probs, old_log_probs, advantages, new_values, returns, entropy, clip_coef,
    vf_coef, ent_coef) -> loss``, a scalar tensor; everything else is [B]."""
    rng = np.random.default_rng(seed)

    def tensor(x, grad=False):
        return torch.tensor(x, dtype=torch.float32, requires_grad=grad)

    for _ in range(trials):
        B = 32
        old = tensor(np.log(rng.uniform(0.05, 0.9, B)))
        new = tensor(old.numpy() + rng.normal(0, 0.4, B), grad=True)
        advantages, returns = tensor(rng.normal(size=B)), tensor(rng.normal(size=B))
        new_values = tensor(rng.normal(size=B), grad=True)
        entropy = tensor(rng.uniform(0.1, 2.0, B), grad=True)
        clip, vf, ent = (
            float(rng.uniform(0.1, 0.3)),
            float(rng.uniform(0.2, 1)),
            float(rng.uniform(0, 0.1)),
        )
        inputs = (new, old, advantages, new_values, returns, entropy)
        expected, parts = ppo_loss(
            *inputs[:4], new_values, *inputs[4:], clip_coef=clip, vf_coef=vf, ent_coef=ent
        )  # old values = new: no value clipping here
        got = fn(*inputs, clip, vf, ent)
        if not torch.is_tensor(got) or got.shape != ():
            _fail("return the loss as a scalar tensor (so that .backward() works)")
        if not got.requires_grad:
            _fail(
                "your loss has no gradient: compute it with torch operations on the inputs "
                "(no .item(), .detach() or NumPy in between)"
            )
        if not torch.allclose(got, expected, atol=1e-5):
            ratio = (new - old).exp()
            value, bonus = vf * parts["value"], ent * parts["entropy"]
            unclipped = -(ratio * advantages).mean()
            clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
            pessimistic = -torch.min(ratio * advantages, clipped).mean()
            wrong = {
                "your policy term is not clipped: −mean(min(r·A, clip(r, 1 − ε, 1 + ε)·A))": (
                    unclipped + value - bonus
                ),
                "take the min of r·A and clip(r)·A, not the max: the objective is a pessimistic "
                "bound": -torch.max(ratio * advantages, clipped).mean() + value - bonus,
                "clipping alone is not enough: take the min of r·A and clip(r)·A, so a step "
                "that made things worse is never clipped away": -clipped.mean() + value - bonus,
                "the entropy bonus is subtracted (we maximise entropy): − ent_coef · mean(H)": (
                    pessimistic + value + bonus
                ),
                "the value term is vf_coef · ½ · mean((V − R)²): did you forget the ½?": (
                    pessimistic + 2 * value - bonus
                ),
            }
            for message, alternative in wrong.items():
                if torch.allclose(got, alternative, atol=1e-5):
                    _fail(message)
            _fail(
                f"loss = −mean(min(r·A, clip(r, 1 ± ε)·A)) + vf_coef · ½ mean((V − R)²) − "
                f"ent_coef · mean(H), r = exp(new − old) (ε={clip:.3f}, vf_coef={vf:.3f}, "
                f"ent_coef={ent:.3f})"
            )
        wrt = (new, new_values, entropy)
        mine = torch.autograd.grad(got, wrt, allow_unused=True)  # None: an input it never used
        theirs = torch.autograd.grad(expected, wrt)
        for name, a, b in zip(("new_log_probs", "new_values", "entropy"), mine, theirs):
            if not torch.allclose(torch.zeros_like(b) if a is None else a, b, atol=1e-5):
                _fail(f"your loss has the right value but not the right gradient in {name}")


# ----------------------------------------------------------------------------- exercise 09


def check_group_advantages(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(rewards [P, G]) -> [P, G]``: (r − group mean) / (group std, ddof 0, + 1e-4)."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        P, G = int(rng.integers(1, 6)), int(rng.integers(2, 9))
        rewards = torch.from_numpy(rng.integers(0, 3, (P, G)).astype(np.float64))
        expected = group_advantages(rewards)
        got = torch.as_tensor(fn(rewards.clone())).double()
        if got.shape != expected.shape:
            _fail(f"return one advantage per draw: shape {tuple(expected.shape)}")
        if torch.allclose(got, expected, atol=1e-6):
            continue
        centred = rewards - rewards.mean(1, keepdim=True)
        if torch.allclose(got, centred, atol=1e-6):
            _fail("divide by the group's standard deviation (+ 1e-4) as well as centring")
        unbiased = centred / (rewards.std(1, keepdim=True) + 1e-4)
        if torch.allclose(got, unbiased, atol=1e-6):
            _fail("use the population std (ddof 0: correction=0), as a group of one has none")
        whole = (rewards - rewards.mean()) / (rewards.std(correction=0) + 1e-4)
        if torch.allclose(got, whole, atol=1e-6):
            _fail("normalise within each prompt's group (each row), not over the whole batch")
        _fail("A_g = (r_g − mean of its row) / (std of its row, ddof 0, + 1e-4)")


def check_grpo_loss(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(log_probs [P, C], old_log_probs [P, G], actions [P, G], advantages [P, G],
    ref_log_probs [P, C], clip, kl_coef) -> loss``: the value and gradient of the library's
    :func:`~recrl_lib.agents.grpo.grpo_loss`."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        P, C, G = int(rng.integers(1, 5)), int(rng.integers(2, 7)), int(rng.integers(2, 9))
        logits = torch.from_numpy(rng.normal(size=(P, C))).requires_grad_()
        log_probs = logits.log_softmax(1)
        ref = torch.from_numpy(rng.normal(size=(P, C))).log_softmax(1)
        actions = torch.from_numpy(rng.integers(0, C, (P, G)))
        old = log_probs.detach().gather(1, actions) + torch.from_numpy(rng.normal(0, 0.4, (P, G)))
        advantages = torch.from_numpy(rng.normal(size=(P, G)))
        clip, beta = float(rng.uniform(0.1, 0.3)), float(rng.uniform(0, 0.2))
        expected, _ = grpo_loss(log_probs, old, actions, advantages, ref, clip=clip, kl_coef=beta)
        got = fn(log_probs, old.clone(), actions.clone(), advantages.clone(), ref, clip, beta)
        if not torch.is_tensor(got) or got.shape != ():
            _fail("return the loss as a scalar tensor (so that .backward() works)")
        if not got.requires_grad:
            _fail("your loss has no gradient: compute it with torch operations on log_probs")
        if not torch.allclose(got.double(), expected, atol=1e-6):
            new = log_probs.gather(1, actions)
            ratio = (new - old).exp()
            clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
            surrogate = -torch.min(ratio * advantages, clipped).mean()
            kl = (log_probs.exp() * (log_probs - ref)).sum(1).mean()
            wrong = {
                "the KL term is missing: + kl_coef · mean over prompts of KL(π ‖ π_ref)": surrogate,
                "the KL is Σ_c π(c) (log π(c) − log π_ref(c)), π first: KL(π ‖ π_ref)": (
                    surrogate + beta * (ref.exp() * (ref - log_probs)).sum(1).mean()
                ),
                "your policy term is not clipped: −mean(min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A))": (
                    -(ratio * advantages).mean() + beta * kl
                ),
                "take the min of ρ·A and clip(ρ)·A, not the max": (
                    -torch.max(ratio * advantages, clipped).mean() + beta * kl
                ),
            }
            for message, alternative in wrong.items():
                if torch.allclose(got.double(), alternative, atol=1e-6):
                    _fail(message)
            _fail(
                "loss = −mean(min(ρ·A, clip(ρ, 1 ± ε)·A)) + β · mean KL(π ‖ π_ref), "
                f"ρ = exp(log π(a) − old) (ε = {clip:.3f}, β = {beta:.3f})"
            )
        (mine,) = torch.autograd.grad(got, logits, retain_graph=True)
        (theirs,) = torch.autograd.grad(expected, logits)
        if not torch.allclose(mine.double(), theirs, atol=1e-6):
            _fail("your loss has the right value but not the right gradient in log_probs")


def check_sequence_log_likelihood(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(logits [B, T, V], targets [B, T], mask [B, T]) -> [B]``: Σ_t mask · log p(target)."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        B, T, V = int(rng.integers(1, 5)), int(rng.integers(1, 7)), int(rng.integers(2, 9))
        logits = torch.from_numpy(rng.normal(0, 2, (B, T, V)))
        targets = torch.from_numpy(rng.integers(0, V, (B, T)))
        lengths = rng.integers(1, T + 1, B)
        mask = torch.from_numpy((np.arange(T)[None] < lengths[:, None]).astype(np.float64))
        expected = sequence_log_likelihood(logits, targets, mask)
        got = torch.as_tensor(fn(logits.clone(), targets.clone(), mask.clone())).double()
        if got.shape != expected.shape:
            _fail(f"return one log-likelihood per sequence: shape {tuple(expected.shape)}")
        if torch.allclose(got, expected, atol=1e-6):
            continue
        log_p = logits.log_softmax(-1).gather(-1, targets[..., None])[..., 0]
        if torch.allclose(got, log_p.sum(-1), atol=1e-6) and not (mask == 1).all():
            _fail("padding (mask 0) must add nothing: multiply each token's log-prob by the mask")
        picked = logits.gather(-1, targets[..., None])[..., 0]
        if torch.allclose(got, (picked * mask).sum(-1), atol=1e-6):
            _fail("use log-probabilities (log_softmax over the vocabulary), not raw logits")
        if torch.allclose(got, (log_p * mask).sum(-1) / mask.sum(-1), atol=1e-6):
            _fail("return the sum over tokens, not the mean (the lesson normalises later)")
        _fail("Σ_t mask_t · log_softmax(logits_t)[target_t], one number per sequence")


# ----------------------------------------------------------------------------- the self-check


# ----------------------------------------------------------------------------- exercise 06


def _random_parameter_sets(rng: np.random.Generator) -> tuple[dict, dict]:
    """θ: one set {name: [1, ...]}; φ: B adapted sets {name: [B, ...]}, B and shapes random."""
    B = int(rng.integers(1, 6))
    shapes = {"w0": (int(rng.integers(1, 5)),), "w1": (int(rng.integers(1, 4)), 3)}
    theta = {k: torch.from_numpy(rng.normal(size=(1, *v))).float() for k, v in shapes.items()}
    adapted = {k: torch.from_numpy(rng.normal(size=(B, *v))).float() for k, v in shapes.items()}
    return theta, adapted


def check_reptile_update(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(theta, adapted, step_size) -> new theta``: θ + ε · mean_b(φ_b − θ), per name."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        theta, adapted = _random_parameter_sets(rng)
        step_size = float(rng.uniform(0.05, 1.0))
        expected = reptile_update(theta, adapted, step_size)
        got = fn({k: v.clone() for k, v in theta.items()}, adapted, step_size)
        if not isinstance(got, dict) or set(got) != set(theta):
            _fail(f"return a dict with the same names as theta: {sorted(theta)}")
        for name, value in expected.items():
            mine = torch.as_tensor(got[name]).float()
            if mine.shape != value.shape:
                _fail(f"theta[{name!r}] should keep its shape {tuple(value.shape)} (one set)")
            first_only = theta[name] + step_size * (adapted[name][:1] - theta[name])
            if len(adapted[name]) > 1 and torch.allclose(mine, first_only):
                _fail("average φ_b − θ over all the users b, not only the first")
            if torch.allclose(mine, adapted[name].mean(0, keepdim=True)) and step_size < 1:
                _fail("θ moves only a step ε toward the users' mean, not all the way")
            if not torch.allclose(mine, value, atol=1e-5):
                _fail(
                    f"θ + ε · (1/B) Σ_b (φ_b − θ) for {name!r} (B={len(adapted[name])}, "
                    f"ε={step_size:.3f})"
                )


def check_reset_memory(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(memory [B, m], new_user [B] bool) -> memory``: zero where a new user arrives."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        B, m = int(rng.integers(1, 7)), int(rng.integers(1, 5))
        memory = torch.from_numpy(rng.normal(size=(B, m))).float()
        new_user = torch.from_numpy(rng.random(B) < 0.5)
        got = fn(memory.clone(), new_user.clone())
        mine = torch.as_tensor(got)
        if mine.shape != memory.shape:
            _fail(f"return the memory with its shape [B, m] = {tuple(memory.shape)}")
        expected = reset_memory(memory, new_user)
        if torch.allclose(mine.float(), reset_memory(memory, ~new_user)) and new_user.any():
            _fail("you wiped the returning users and kept the new ones: the other way round")
        if (mine[~new_user] == 0).all() and (~new_user).any() and memory[~new_user].abs().sum():
            _fail("the same user coming back keeps their memory: wipe only rows of a new user")
        if not torch.allclose(mine.float(), expected):
            _fail("rows where new_user is True become 0; the other rows stay as they were")


# ----------------------------------------------------------------------------- exercise 07


def _random_lists(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(ranked [U, L] long, gains [U, N] float with ties and a user without gain, k)."""
    n_users, n_items = int(rng.integers(2, 7)), int(rng.integers(4, 12))
    length = int(rng.integers(1, n_items + 1))
    ranked = np.stack([rng.permutation(n_items)[:length] for _ in range(n_users)])
    gains = rng.integers(0, 3, size=(n_users, n_items)).astype(float)  # equal gains: ties
    gains[0] = 0.0  # a user with nothing relevant
    k = int(rng.integers(1, n_items + 3))  # sometimes larger than the list
    return torch.from_numpy(ranked), torch.from_numpy(gains), k


def check_ndcg_at_k(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(ranked [U, L], gains [U, N], k) -> [U]``: NDCG@k with linear gain, NaN without
    gain."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        ranked, gains, k = _random_lists(rng)
        expected = ndcg_at_k(ranked, gains, k)
        try:
            mine = torch.as_tensor(fn(ranked.clone(), gains.clone(), k)).double()
        except Exception as error:  # a crash becomes a message that says on what
            n_items, length = gains.shape[1], ranked.shape[1]
            _fail(f"your function raised {error!r} for k={k}, lists of {length}, {n_items} items")
        if mine.shape != expected.shape:
            _fail(f"return one value per user: shape {tuple(expected.shape)}")
        if not mine[0].isnan():
            _fail("a user whose gains are all 0 has no ideal list: NDCG is NaN (undefined)")
        defined = ~expected.isnan()
        discount = 1 / torch.log2(torch.arange(2, ranked.shape[1] + 2).double())
        got = gains.gather(1, ranked[:, :k])
        own_ideal = (got.sort(1, descending=True).values * discount[: got.shape[1]]).sum(1)
        own = (got * discount[: got.shape[1]]).sum(1) / own_ideal
        if torch.allclose(mine[defined], own[defined], equal_nan=True) and not torch.allclose(
            own[defined], expected[defined], equal_nan=True
        ):
            _fail("the ideal DCG sorts the gains of *all* the user's items, not only the listed")
        if not torch.allclose(mine[defined], expected[defined], atol=1e-6):
            _fail(
                f"NDCG@{k} = DCG / IDCG with DCG = Σ_(i=1..k) gain_i / log2(i + 1) "
                f"(lists of length {ranked.shape[1]}: positions past the list add nothing)"
            )


def _random_log(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    n = int(rng.integers(2, 40))
    rewards = rng.random(n) * (rng.random(n) < 0.5)
    target_p, behaviour_p = rng.uniform(0.0, 1.0, n), rng.uniform(0.05, 1.0, n)
    return rewards, target_p, behaviour_p


def _check_estimator(fn: Callable, reference: Callable, name: str, trials: int, seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        rewards, target_p, behaviour_p = _random_log(rng)
        expected = reference(rewards, target_p, behaviour_p)
        try:
            mine = float(fn(rewards.copy(), target_p.copy(), behaviour_p.copy()))
        except Exception as error:  # a crash becomes a message that says on what
            _fail(f"your {name} raised {error!r} on a log of {len(rewards)} rows (numpy arrays)")
        if np.isclose(mine, float(reference(rewards, behaviour_p, target_p))) and not np.isclose(
            mine, expected
        ):
            _fail("the weight is π(a|x) / β(a|x): target over behaviour, not the other way")
        if np.isclose(mine, rewards.mean()) and not np.isclose(mine, expected):
            _fail(f"{name} weights each reward by π/β; you averaged the rewards")
        by_n = ips(rewards, target_p, behaviour_p)
        if name == "SNIPS" and np.isclose(mine, by_n) and not np.isclose(mine, expected):
            _fail("SNIPS divides by the sum of the weights Σ w_i, not by n")
        if not np.isclose(mine, expected, atol=1e-8):
            _fail(f"{name} of {len(rewards)} logged rows: expected {expected:.6f}, got {mine:.6f}")


def check_ips(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(rewards [n], target_p [n], behaviour_p [n]) -> float``: (1/n) Σ (π/β) r."""
    _check_estimator(fn, ips, "IPS", trials, seed)


def check_snips(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(rewards [n], target_p [n], behaviour_p [n]) -> float``: Σ w r / Σ w."""
    _check_estimator(fn, snips, "SNIPS", trials, seed)


# ----------------------------------------------------------------------------- exercise 08


def check_topk_multiplier(fn: Callable, trials: int = 30, seed: int = 0) -> None:
    """``fn(pi [n], k) -> [n]``: λ_K = K (1 − π)^(K−1)."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        pi = torch.from_numpy(rng.uniform(0, 1, int(rng.integers(1, 9))))
        pi[0] = 0.0
        k = int(rng.integers(1, 17))
        mine = torch.as_tensor(fn(pi.clone(), k)).double()
        expected = topk_multiplier(pi, k)
        if mine.shape != expected.shape:
            _fail(f"return one multiplier per item: shape {tuple(expected.shape)}")
        right = torch.allclose(mine, expected, atol=1e-8)
        if torch.allclose(mine, 1 - (1 - pi) ** k) and not right:
            _fail("λ_K is the derivative of 1 − (1 − π)^K, not the probability itself")
        if torch.allclose(mine, k * (1 - pi) ** k) and not right:
            _fail("the power is K − 1: λ_K = K (1 − π)^(K−1)")
        if not right:
            _fail(f"λ_K = K (1 − π)^(K−1) with K = {k}; at π = 0 it is K = {k}")


def check_corrected_loss(fn: Callable, trials: int = 30, seed: int = 0) -> None:
    """``fn(log_pi [n], returns [n], beta [n], cap, top_k) -> loss``: the value and the
    gradient of the library's :func:`~recrl_lib.agents.reinforce_offpolicy.reinforce_loss`."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        n, n_items = int(rng.integers(2, 9)), int(rng.integers(3, 7))
        logits = torch.from_numpy(rng.normal(size=(n, n_items)))
        actions = torch.from_numpy(rng.integers(0, n_items, n))
        returns = torch.from_numpy(rng.normal(1.0, 1.0, n))
        beta = torch.from_numpy(rng.uniform(0.02, 0.6, n))
        cap = None if rng.random() < 0.3 else float(rng.uniform(1.0, 10.0))
        top_k = None if rng.random() < 0.4 else int(rng.integers(1, 6))
        grads = []
        for reference in (True, False):
            theta = logits.clone().requires_grad_(True)
            log_pi = torch.log_softmax(theta, 1)[torch.arange(n), actions]
            if reference:
                loss = reinforce_loss(log_pi, returns, beta, cap=cap, top_k=top_k)
            else:
                loss = torch.as_tensor(fn(log_pi, returns.clone(), beta.clone(), cap, top_k))
                if loss.dim() != 0:
                    _fail("return the loss as one number (a scalar tensor), the mean over rows")
                if not loss.requires_grad:
                    _fail("the loss has no gradient: keep log_pi in it (detach only the weights)")
            loss.backward()
            grads.append((loss.item(), theta.grad.clone()))
        (expected, expected_grad), (mine, my_grad) = grads
        case = f"(n={n}, cap={cap}, top_k={top_k})"
        if not np.isclose(mine, expected, atol=1e-6) and np.isclose(mine, -expected, atol=1e-6):
            _fail("the loss is the *negative* weighted mean: minimising it ascends the return")
        if not np.isclose(mine, expected, atol=1e-6):
            _fail(f"loss = −mean(w · G · log π(a)), w = min(π/β, cap) · λ_K(π) {case}")
        if not torch.allclose(my_grad, expected_grad, atol=1e-6):
            _fail(f"the value is right but not the gradient: detach the weight w {case}")


# ----------------------------------------------------------------------------- exercise 10


def check_gini(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(counts [n]) -> float``: G = Σ_i (2i − n − 1) x_(i) / (n Σ x), counts sorted."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        n = int(rng.integers(2, 12))
        counts = rng.integers(0, 6, n).astype(float)  # small counts: ties
        counts[int(rng.integers(n))] += 1  # never all zero
        expected = gini(counts)
        try:
            mine = float(fn(counts.copy()))
        except Exception as error:  # a crash becomes a message that says on what
            _fail(f"your gini raised {error!r} on counts {counts.tolist()} (a numpy array)")
        i = np.arange(1, n + 1)
        unsorted = float(((2 * i - n - 1) * counts).sum() / (n * counts.sum()))
        if np.isclose(mine, unsorted) and not np.isclose(mine, expected):
            _fail("sort the counts first (x_(1) ≤ … ≤ x_(n)): the formula reads them in order")
        descending = float(((2 * i - n - 1) * np.sort(counts)[::-1]).sum() / (n * counts.sum()))
        if np.isclose(mine, descending) and not np.isclose(mine, expected):
            _fail("sort the counts in increasing order: the largest count gets the largest weight")
        if np.isclose(mine, expected * n) and not np.isclose(mine, expected):
            _fail("divide by n Σ x, not by Σ x alone")
        if not np.isclose(mine, expected, atol=1e-9):
            _fail(f"Gini of {counts.tolist()}: expected {expected:.6f}, got {mine:.6f}")


def check_mean_pairwise_jaccard(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(sets [U, N] bool) -> float``: the mean of |A ∩ B| / |A ∪ B| over pairs of distinct
    rows, pairs of two empty sets left out."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        users, n = int(rng.integers(2, 7)), int(rng.integers(2, 9))
        sets = torch.from_numpy(rng.random((users, n)) < rng.uniform(0.2, 0.7))
        sets[0] = sets[1] if rng.random() < 0.3 else sets[0]  # sometimes identical sets
        if not sets.any():
            sets[0, 0] = True
        expected = mean_pairwise_jaccard(sets)
        try:
            mine = float(fn(sets.clone()))
        except Exception as error:  # a crash becomes a message that says on what
            _fail(f"your function raised {error!r} on {users} users' sets of {n} items")
        x = sets.double()
        shared, size = x @ x.T, x.sum(1)
        union = size[:, None] + size[None, :] - shared
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = (shared / union).numpy()
        with_self = np.nanmean(ratio)  # the diagonal left in
        if np.isclose(mine, with_self) and not np.isclose(mine, expected):
            _fail("leave out each user's pair with itself (u ≠ v): its Jaccard is always 1")
        dice = (2 * shared / (size[:, None] + size[None, :])).numpy()
        off = ~np.eye(users, dtype=bool) & (union.numpy() > 0)
        if np.isclose(mine, dice[off].mean()) and not np.isclose(mine, expected):
            _fail("divide by the union |A ∪ B| = |A| + |B| − |A ∩ B|, not by |A| + |B|")
        if not np.isclose(mine, expected, atol=1e-9):
            _fail(f"mean Jaccard of {users} users' sets: expected {expected:.6f}, got {mine:.6f}")


def check_linucb_update(fn: Callable, trials: int = 50, seed: int = 0) -> None:
    """``fn(A [d, d], b [d], x [d], r) -> (A', b')``: A + x xᵀ and b + r x, as new tensors."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        d = int(rng.integers(1, 6))
        A = torch.eye(d, dtype=torch.float64) + torch.from_numpy(np.diag(rng.random(d)))
        b, x = torch.from_numpy(rng.normal(size=d)), torch.from_numpy(rng.normal(size=d))
        r = float(rng.choice([0.0, 1.0, rng.normal()]))
        expected_A, expected_b = linucb_update(A, b, x, r)
        before = (A.clone(), b.clone())
        try:
            result = fn(A, b, x.clone(), r)
        except Exception as error:  # a crash becomes a message that says on what
            _fail(f"your update raised {error!r} for d = {d} (torch float64 tensors)")
        if not isinstance(result, tuple) or len(result) != 2:
            _fail("return the pair (A, b): the updated statistics")
        mine_A, mine_b = (torch.as_tensor(t).double() for t in result)
        if mine_A.shape != (d, d):
            _fail(f"A' must stay [d, d] = [{d}, {d}]: A plus the [d, d] outer product x xᵀ")
        if torch.allclose(mine_A, A + x @ x) and d > 1 and not torch.allclose(mine_A, expected_A):
            _fail("add the outer product x xᵀ (a [d, d] matrix), not the dot product x · x")
        if not torch.allclose(mine_A, expected_A, atol=1e-9):
            _fail("A' = A + x xᵀ: the shown item's features, outer with themselves")
        if torch.allclose(mine_b, b + x) and r != 1 and not torch.allclose(mine_b, expected_b):
            _fail("b' = b + r x: weight the features by the reward r")
        if not torch.allclose(mine_b, expected_b, atol=1e-9):
            _fail("b' = b + r x")
        if not (torch.equal(A, before[0]) and torch.equal(b, before[1])):
            _fail("return new tensors and leave the inputs A and b as they were")


def self_check(parts: dict[str, Callable[[], None]]) -> dict[str, bool]:
    """Run each part's check, print ✓ or ✗ with the reason, and return {part: passed}.

    ``parts[name]`` is a function of no arguments, e.g. ``lambda: check_td_target(td_target)``.
    A part not implemented yet (``NotImplementedError``) is reported as such.
    """
    results = {}
    for name, check in parts.items():
        try:
            check()
        except NotImplementedError:
            results[name] = False
            print(f"✗ {name}: not implemented yet")
        except AssertionError as failure:
            results[name] = False
            print(f"✗ {name}: {failure}")
        except Exception as error:  # the learner's code crashed: say how
            results[name] = False
            print(f"✗ {name}: your code raised {type(error).__name__}: {error}")
        else:
            results[name] = True
            print(f"✓ {name}")
    print(f"{sum(results.values())} of {len(results)} parts pass")
    return results
