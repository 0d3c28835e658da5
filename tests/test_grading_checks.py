"""The exercises' checks: the library's references pass them, and typical mistakes fail them
with a message that names the mistake."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recrl_lib import grading
from recrl_lib.agents.dqn import n_step_returns, td_target
from recrl_lib.agents.meta import reptile_update, reset_memory
from recrl_lib.agents.ppo import gae, ppo_loss
from recrl_lib.agents.reinforce_offpolicy import reinforce_loss, topk_multiplier
from recrl_lib.agents.tabular import q_learning_update, sarsa_update
from recrl_lib.envs.genre_mdp import bellman_backup
from recrl_lib.evaluation.off_policy import ips, snips
from recrl_lib.evaluation.ranking import ndcg_at_k


def test_the_references_pass_every_check():
    grading.check_q_learning_update(q_learning_update)
    grading.check_sarsa_update(sarsa_update)
    grading.check_bellman_backup(bellman_backup)
    grading.check_n_step_returns(n_step_returns)
    grading.check_td_target(td_target)
    grading.check_huber_loss(lambda p, t, delta: F.huber_loss(p, t, delta=delta))


def q_update_bootstrapping_at_the_end(q, s, a, r, s2, terminated, *, alpha, gamma):
    error = r + gamma * q[s2].max() - q[s, a]  # forgets `terminated`
    q[s, a] += alpha * error
    return error


def sarsa_with_the_max(q, s, a, r, s2, a2, terminated, *, alpha, gamma):
    error = r + (0.0 if terminated else gamma * q[s2].max()) - q[s, a]
    q[s, a] += alpha * error
    return error


def q_update_returning_nothing(q, s, a, r, s2, terminated, *, alpha, gamma):
    q_learning_update(q, s, a, r, s2, terminated, alpha=alpha, gamma=gamma)


@pytest.mark.parametrize(
    ("check", "wrong", "message"),
    [
        (grading.check_q_learning_update, q_update_bootstrapping_at_the_end, "terminated step"),
        (grading.check_sarsa_update, sarsa_with_the_max, "action taken next"),
        (grading.check_q_learning_update, q_update_returning_nothing, "return the TD error"),
        (
            grading.check_bellman_backup,
            lambda mdp, q: mdp.R + mdp.gamma * mdp.P @ q.mean(1),
            "averages over the next actions",
        ),
        (grading.check_bellman_backup, lambda mdp, q: mdp.R + mdp.P @ q.max(1), "discount"),
    ],
)
def test_tabular_mistakes_are_named(check, wrong, message):
    with pytest.raises(AssertionError, match=message):
        check(wrong)


def n_step_without_stopping(rewards, done, terminated, gamma):
    n = rewards.shape[1]
    G = (rewards * gamma ** torch.arange(n)).sum(1)
    _, discount, last = n_step_returns(rewards, done, terminated, gamma)
    return G, discount, last


def n_step_bootstrapping_after_termination(rewards, done, terminated, gamma):
    G, _, last = n_step_returns(rewards, done, terminated, gamma)
    return G, gamma ** (last + 1).float(), last


def swapped_double(returns, discount, online, target, valid, *, double):
    return td_target(returns, discount, online, target, valid, double=not double)


def unmasked(returns, discount, online, target, valid, *, double):
    return td_target(returns, discount, online, target, None, double=double)


def target_ignoring_termination(returns, discount, online, target, valid, *, double):
    bootstrap = discount.clone()
    bootstrap[bootstrap == 0] = 0.9
    return td_target(returns, bootstrap, online, target, valid, double=double)


@pytest.mark.parametrize(
    ("check", "wrong", "message"),
    [
        (grading.check_n_step_returns, n_step_without_stopping, "keeps summing"),
        (
            grading.check_n_step_returns,
            n_step_bootstrapping_after_termination,
            "not 0 after a terminated",
        ),
        (grading.check_td_target, swapped_double, "ONLINE net"),
        (grading.check_td_target, unmasked, "invalid action"),
        (grading.check_td_target, target_ignoring_termination, "bootstraps after a terminated"),
        (grading.check_huber_loss, lambda p, t, delta: (0.5 * (p - t) ** 2).mean(), "quadratic"),
        (
            grading.check_huber_loss,
            lambda p, t, delta: F.huber_loss(p.detach(), t, delta=delta),
            "no gradient",
        ),
        (
            grading.check_huber_loss,
            lambda p, t, delta: F.huber_loss(p, t, delta=delta, reduction="sum"),
            "Huber",
        ),
    ],
)
def test_dqn_mistakes_are_named(check, wrong, message):
    with pytest.raises(AssertionError, match=message):
        check(wrong)


def test_self_check_reports_each_part(capsys):
    def not_yet():
        raise NotImplementedError

    def crashes():
        return 1 / 0

    results = grading.self_check(
        {
            "fine": lambda: grading.check_td_target(td_target),
            "wrong": lambda: grading.check_td_target(unmasked),
            "blank": not_yet,
            "crash": crashes,
        }
    )
    out = capsys.readouterr().out
    assert results == {"fine": True, "wrong": False, "blank": False, "crash": False}
    assert "✓ fine" in out and "✗ blank: not implemented yet" in out
    assert "ZeroDivisionError" in out and "1 of 4 parts pass" in out


def test_random_mdps_are_proper():
    mdp = grading.random_mdp(np.random.default_rng(0))
    np.testing.assert_allclose(mdp.P.sum(-1), 1.0)
    assert mdp.terminal[-1] and (mdp.P[-1, :, -1] == 1).all()


# ----------------------------------------------------------------------------- exercise 05


def ppo_reference(new, old, advantages, new_values, returns, entropy, clip, vf, ent):
    loss, _ = ppo_loss(
        new,
        old,
        advantages,
        new_values,
        new_values,
        returns,
        entropy,
        clip_coef=clip,
        vf_coef=vf,
        ent_coef=ent,
    )
    return loss


def gae_across_sessions(rewards, values, next_values, terminated, done, gamma, lam):
    return gae(rewards, values, next_values, terminated, torch.zeros_like(done), gamma, lam)


def gae_cut_as_terminated(rewards, values, next_values, terminated, done, gamma, lam):
    return gae(rewards, values, next_values, done, done, gamma, lam)


def gae_bootstrapping_after_termination(rewards, values, next_values, terminated, done, gamma, lam):
    return gae(rewards, values, next_values, torch.zeros_like(done), done, gamma, lam)


def gae_returns_without_values(rewards, values, next_values, terminated, done, gamma, lam):
    advantages, _ = gae(rewards, values, next_values, terminated, done, gamma, lam)
    return advantages, advantages


def loss_with(policy):
    def loss(new, old, advantages, new_values, returns, entropy, clip, vf, ent):
        ratio = (new - old).exp()
        value = 0.5 * ((new_values - returns) ** 2).mean()
        return policy(ratio, advantages, clip) + vf * value - ent * entropy.mean()

    return loss


def loss_adding_entropy(new, old, advantages, new_values, returns, entropy, clip, vf, ent):
    return ppo_reference(new, old, advantages, new_values, returns, entropy, clip, vf, 0.0) + (
        ent * entropy.mean()
    )


def loss_with_a_constant_entropy_term(new, old, advantages, new_values, returns, entropy, *coefs):
    constant = entropy.detach()  # the right value, but no gradient into the entropy
    return ppo_reference(new, old, advantages, new_values, returns, constant, *coefs)


def loss_without_a_gradient(*args):
    return ppo_reference(*args).detach()


@pytest.mark.parametrize(
    ("check", "wrong", "message"),
    [
        (grading.check_gae, gae_across_sessions, "run across the end of a session"),
        (grading.check_gae, gae_cut_as_terminated, r"a cut \(truncated\) session had a future"),
        (grading.check_gae, gae_bootstrapping_after_termination, "bootstraps after a terminated"),
        (grading.check_gae, gae_returns_without_values, r"advantages \+ values"),
        (grading.check_ppo_loss, loss_with(lambda r, a, c: -(r * a).mean()), "not clipped"),
        (
            grading.check_ppo_loss,
            loss_with(lambda r, a, c: -torch.max(r * a, r.clamp(1 - c, 1 + c) * a).mean()),
            "not the max",
        ),
        (
            grading.check_ppo_loss,
            loss_with(lambda r, a, c: -(r.clamp(1 - c, 1 + c) * a).mean()),
            "clipping alone is not enough",
        ),
        (grading.check_ppo_loss, loss_adding_entropy, "entropy bonus is subtracted"),
        (grading.check_ppo_loss, loss_without_a_gradient, "no gradient"),
        (grading.check_ppo_loss, loss_with_a_constant_entropy_term, "gradient in entropy"),
    ],
)
def test_ppo_mistakes_are_named(check, wrong, message):
    with pytest.raises(AssertionError, match=message):
        check(wrong)


def test_the_ppo_references_pass():
    grading.check_gae(gae)
    grading.check_ppo_loss(ppo_reference)


def test_the_meta_references_pass():
    grading.check_reptile_update(reptile_update)
    grading.check_reset_memory(reset_memory)


def reptile_first_user_only(theta, adapted, step_size):
    return {k: theta[k] + step_size * (adapted[k][:1] - theta[k]) for k in theta}


def reptile_all_the_way(theta, adapted, step_size):
    return {k: adapted[k].mean(0, keepdim=True) for k in theta}


def reptile_without_the_mean(theta, adapted, step_size):
    return {k: theta[k] + step_size * (adapted[k] - theta[k]).sum(0, keepdim=True) for k in theta}


@pytest.mark.parametrize(
    ("check", "wrong", "message"),
    [
        (grading.check_reptile_update, reptile_first_user_only, "not only the first"),
        (grading.check_reptile_update, reptile_all_the_way, "not all the way"),
        (grading.check_reptile_update, reptile_without_the_mean, r"\(1/B\) Σ_b"),
        (grading.check_reset_memory, lambda m, new: m * new[:, None], "the other way round"),
        (grading.check_reset_memory, lambda m, new: torch.zeros_like(m), "keeps their memory"),
        (grading.check_reset_memory, lambda m, new: m, "rows where new_user is True"),
    ],
)
def test_meta_mistakes_are_named(check, wrong, message):
    with pytest.raises(AssertionError, match=message):
        check(wrong)


def test_the_evaluation_references_pass():
    grading.check_ndcg_at_k(ndcg_at_k)
    grading.check_ips(ips)
    grading.check_snips(snips)


def ndcg_with_its_own_ideal(ranked, gains, k):
    got = gains.gather(1, ranked[:, :k]).double()
    discount = 1 / torch.log2(torch.arange(2, got.shape[1] + 2).double())
    ideal = (got.sort(1, descending=True).values * discount).sum(1)
    return torch.where(ideal > 0, (got * discount).sum(1) / ideal, torch.nan)


def ndcg_zero_without_gain(ranked, gains, k):
    return ndcg_at_k(ranked, gains, k).nan_to_num(0.0)


def ndcg_with_log2_of_i(ranked, gains, k):
    got = gains.gather(1, ranked[:, :k]).double()
    discount = 1 / torch.log2(torch.arange(2, got.shape[1] + 2).double() + 1)
    ideal = gains.double().topk(min(k, gains.shape[1]), 1).values
    idcg = (ideal * (1 / torch.log2(torch.arange(2, ideal.shape[1] + 2).double() + 1))).sum(1)
    return torch.where(idcg > 0, (got * discount).sum(1) / idcg, torch.nan)


@pytest.mark.parametrize(
    ("check", "wrong", "message"),
    [
        (grading.check_ndcg_at_k, ndcg_with_its_own_ideal, "all. the user's items"),
        (grading.check_ndcg_at_k, ndcg_zero_without_gain, "NaN"),
        (grading.check_ndcg_at_k, ndcg_with_log2_of_i, r"log2\(i \+ 1\)"),
        (grading.check_ips, lambda r, t, b: np.mean(r * b / t), "not the other way"),
        (grading.check_ips, lambda r, t, b: np.mean(r), "averaged the rewards"),
        (grading.check_snips, lambda r, t, b: ips(r, t, b), "not by n"),
        (grading.check_snips, lambda r, t, b: np.sum(r * t / b) / len(r) * 1.1, "SNIPS of"),
    ],
)
def test_evaluation_mistakes_are_named(check, wrong, message):
    with pytest.raises(AssertionError, match=message):
        check(wrong)


def test_the_log_learning_references_pass():
    grading.check_topk_multiplier(topk_multiplier)
    grading.check_corrected_loss(lambda lp, g, b, c, k: reinforce_loss(lp, g, b, cap=c, top_k=k))


def loss_with_an_attached_weight(log_pi, returns, beta, cap, top_k):
    weight = log_pi.exp() / beta  # the weight keeps its gradient
    if cap is not None:
        weight = weight.clamp(max=cap)
    if top_k is not None:
        weight = weight * topk_multiplier(log_pi.exp(), top_k)
    return -(weight * returns * log_pi).mean()


@pytest.mark.parametrize(
    ("check", "wrong", "message"),
    [
        (grading.check_topk_multiplier, lambda pi, k: 1 - (1 - pi) ** k, "derivative"),
        (grading.check_topk_multiplier, lambda pi, k: k * (1 - pi) ** k, "the power is K − 1"),
        (
            grading.check_corrected_loss,
            lambda lp, g, b, c, k: -reinforce_loss(lp, g, b, cap=c, top_k=k),
            "negative",
        ),
        (
            grading.check_corrected_loss,
            lambda lp, g, b, c, k: reinforce_loss(lp, g, b, top_k=k),
            "cap",
        ),
        (grading.check_corrected_loss, loss_with_an_attached_weight, "detach the weight"),
    ],
)
def test_log_learning_mistakes_are_named(check, wrong, message):
    with pytest.raises(AssertionError, match=message):
        check(wrong)
