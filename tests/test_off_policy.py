"""Off-policy estimators on synthetic problems whose true value is known in advance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recrl_lib.evaluation.off_policy import (
    clipped_ips,
    direct_method,
    doubly_robust,
    importance_weights,
    independent_slots_gamma,
    ips,
    per_decision_is,
    pseudo_inverse,
    ridge_reward_model,
    snips,
    trajectory_is,
    weighted_per_decision_is,
)

N_LOGS, N_ROWS = 2000, 200


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def bandit():
    """5 contexts, 4 actions, Bernoulli rewards; β favours the poor actions, π the good ones."""
    rng = np.random.default_rng(0)
    p_reward = rng.uniform(0.05, 0.95, (5, 4))
    behaviour = softmax(-3 * p_reward)  # the logging policy shows what pays least ...
    target = softmax(4 * p_reward)  # ... the target what pays most
    truth = (target * p_reward).sum(1).mean()  # contexts are uniform
    model = np.clip(p_reward + rng.normal(0, 0.15, p_reward.shape), 0, 1)  # a wrong model
    estimates = {name: [] for name in ("naive", "IPS", "clipped", "SNIPS", "DM", "DR")}
    for _ in range(N_LOGS):
        x = rng.integers(0, 5, N_ROWS)
        a = (rng.random((N_ROWS, 1)) > behaviour[x].cumsum(1)).sum(1).clip(max=3)  # a ~ β(·|x)
        r = (rng.random(N_ROWS) < p_reward[x, a]).astype(float)
        pi, beta = target[x, a], behaviour[x, a]
        under_target = (target[x] * model[x]).sum(1)
        estimates["naive"].append(r.mean())
        estimates["IPS"].append(ips(r, pi, beta))
        estimates["clipped"].append(clipped_ips(r, pi, beta, cap=10.0))
        estimates["SNIPS"].append(snips(r, pi, beta))
        estimates["DM"].append(direct_method(under_target))
        estimates["DR"].append(doubly_robust(r, pi, beta, model[x, a], under_target))
        if len(estimates["naive"]) == 1:
            first_log = (r, pi, beta)
    return truth, {k: np.array(v) for k, v in estimates.items()}, first_log


@pytest.mark.parametrize("name", ["IPS", "DR"])
def test_ips_and_dr_are_unbiased(bandit, name):
    truth, estimates, _ = bandit
    values = estimates[name]
    assert abs(values.mean() - truth) < 3 * values.std() / np.sqrt(N_LOGS)


def test_snips_stays_within_the_rewards_range_in_every_log(bandit):
    _, estimates, _ = bandit
    assert ((estimates["SNIPS"] >= 0) & (estimates["SNIPS"] <= 1)).all()


def test_every_estimator_beats_the_naive_average_where_logging_is_skewed(bandit):
    truth, estimates, _ = bandit
    naive_error = np.abs(estimates["naive"] - truth).mean()
    assert naive_error > 0.1  # the log is skewed: averaging it is badly biased
    for name, values in estimates.items():
        assert np.abs(values - truth).mean() <= 1.5 * naive_error, name


def test_clipping_bounds_every_weight_and_a_high_cap_is_ips(bandit):
    _, _, (r, pi, beta) = bandit
    w = importance_weights(pi, beta)
    assert clipped_ips(r, pi, beta, cap=float(w.max())) == pytest.approx(ips(r, pi, beta))
    capped = clipped_ips(np.ones_like(r), pi, beta, cap=2.0)
    assert capped <= 2.0 and capped == pytest.approx(float(w.clamp(max=2.0).mean()))


def test_with_the_target_as_logger_every_weight_is_one():
    r, p = np.array([1.0, 0.0, 1.0]), np.array([0.2, 0.5, 0.9])
    assert ips(r, p, p) == snips(r, p, p) == pytest.approx(2 / 3)


@pytest.mark.parametrize("estimator", [ips, snips, lambda r, t, b: clipped_ips(r, t, b, 5.0)])
def test_a_zero_propensity_is_a_clear_error(estimator):
    with pytest.raises(ValueError, match="propensity 0"):
        estimator([1.0, 0.0], [0.5, 0.5], [0.5, 0.0])


def test_a_probability_above_one_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ips([1.0], [1.5], [0.5])


def sessions(rng, click: np.ndarray, policy: np.ndarray, n: int, horizon: int):
    """A session shows one of A items a step; a miss ends it. -> rewards, probs, alive."""
    actions = rng.choice(len(policy), size=(n, horizon), p=policy)
    clicked = rng.random((n, horizon)) < click[actions]
    alive = np.cumprod(np.concatenate([np.ones((n, 1)), clicked[:, :-1]], 1), 1).astype(bool)
    return clicked * alive * 1.0, actions, alive


def test_session_estimators_on_sessions_with_a_known_value():
    rng = np.random.default_rng(1)
    click = np.array([0.9, 0.6, 0.3])
    target, behaviour = np.array([0.7, 0.2, 0.1]), np.array([0.2, 0.3, 0.5])
    horizon, gamma = 4, 0.9
    mean_click = target @ click  # V = Σ_t γ^t P(alive at t) E[r_t] = Σ_t γ^t c̄^(t+1)
    truth = sum(gamma**t * mean_click ** (t + 1) for t in range(horizon))
    values = {"trajectory": [], "per-decision": [], "weighted": []}
    for _ in range(N_LOGS):
        r, a, alive = sessions(rng, click, behaviour, N_ROWS, horizon)
        args = (r, target[a] * alive + ~alive, behaviour[a] * alive + ~alive, alive, gamma)
        values["trajectory"].append(trajectory_is(*args))
        values["per-decision"].append(per_decision_is(*args))
        values["weighted"].append(weighted_per_decision_is(*args))
    for name in ("trajectory", "per-decision"):
        v = np.array(values[name])
        assert abs(v.mean() - truth) < 3 * v.std() / np.sqrt(N_LOGS), name
    assert np.std(values["per-decision"]) < np.std(values["trajectory"])
    assert max(values["weighted"]) <= sum(gamma**t for t in range(horizon))
    # the weighted form is biased but consistent: on one log of 100,000 sessions it is close
    r, a, alive = sessions(rng, click, behaviour, 100_000, horizon)
    args = (r, target[a] * alive + ~alive, behaviour[a] * alive + ~alive, alive, gamma)
    assert abs(weighted_per_decision_is(*args) - truth) < 0.01 * truth


def test_with_one_step_per_decision_is_equals_trajectory_is_equals_ips():
    rng = np.random.default_rng(2)
    r = rng.integers(0, 2, (50, 1)).astype(float)
    pi, beta = rng.uniform(0.1, 1, (50, 1)), rng.uniform(0.1, 1, (50, 1))
    alive = np.ones((50, 1), bool)
    expected = ips(r[:, 0], pi[:, 0], beta[:, 0])
    assert per_decision_is(r, pi, beta, alive) == pytest.approx(expected)
    assert trajectory_is(r, pi, beta, alive) == pytest.approx(expected)


def test_a_reward_after_the_session_ended_is_refused():
    alive = np.array([[True, False]])
    with pytest.raises(ValueError, match="ended"):
        per_decision_is([[1.0, 1.0]], [[0.5, 1.0]], [[0.5, 1.0]], alive)


def slates(rng, marginals: np.ndarray, n: int) -> np.ndarray:
    return np.stack([rng.choice(marginals.shape[1], size=n, p=row) for row in marginals], 1)


def test_pseudo_inverse_with_one_slot_is_ips():
    rng = np.random.default_rng(3)
    mu, pi = softmax(rng.normal(size=(1, 6))), softmax(rng.normal(size=(1, 6)))
    s = slates(rng, mu, 100)
    r = rng.random(100)
    estimate = pseudo_inverse(r, s, pi, independent_slots_gamma(mu))
    assert estimate == pytest.approx(ips(r, pi[0, s[:, 0]], mu[0, s[:, 0]]))


def test_pseudo_inverse_for_independent_slots_has_the_closed_form():
    """Swaminathan et al. (2017): for a logger that fills slots independently,
    q_πᵀ Γ^† 1_s = Σ_j π_j(s_j) / μ_j(s_j) − L + 1."""
    rng = np.random.default_rng(4)
    mu, pi = softmax(rng.normal(size=(3, 5))), softmax(rng.normal(size=(3, 5)))
    s = slates(rng, mu, 200)
    r = rng.random(200)
    ratios = (pi[np.arange(3), s] / mu[np.arange(3), s]).sum(1) - 3 + 1
    assert pseudo_inverse(r, s, pi, independent_slots_gamma(mu)) == pytest.approx(
        (r * ratios).mean()
    )


def test_pseudo_inverse_is_unbiased_for_an_additive_slate_reward():
    rng = np.random.default_rng(5)
    slot_value = rng.uniform(0, 1, (2, 4))  # reward = Σ_j value(j, s_j) + noise
    mu, pi = softmax(rng.normal(size=(2, 4))), softmax(2 * rng.normal(size=(2, 4)))
    truth = (pi * slot_value).sum()
    gamma = independent_slots_gamma(mu)
    values = []
    for _ in range(N_LOGS // 2):
        s = slates(rng, mu, N_ROWS)
        r = slot_value[np.arange(2), s].sum(1) + rng.normal(0, 0.1, N_ROWS)
        values.append(pseudo_inverse(r, s, pi, gamma))
    values = np.array(values)
    assert abs(values.mean() - truth) < 3 * values.std() / np.sqrt(len(values))


def test_importance_weights_keep_the_shape():
    w = importance_weights(torch.full((2, 3), 0.5), torch.full((2, 3), 0.25))
    assert w.shape == (2, 3) and (w == 2).all()


def test_the_ridge_reward_model_solves_the_augmented_least_squares():
    rng = np.random.default_rng(7)
    x, r = rng.normal(size=(40, 3)), rng.random(40)
    w = ridge_reward_model(x, r, l2=2.0).numpy()
    design = np.hstack([x, np.ones((40, 1))])
    augmented = np.vstack([design, np.hstack([np.sqrt(2.0) * np.eye(3), np.zeros((3, 1))])])
    expected = np.linalg.lstsq(augmented, np.concatenate([r, np.zeros(3)]), rcond=None)[0]
    np.testing.assert_allclose(w, expected, atol=1e-10)
