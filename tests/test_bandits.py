"""Contextual linear bandits: against a plain NumPy reference written with loops, and on a
linear bandit with a known optimal arm (regret grows sublinearly; exploration beats greedy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recrl_lib.agents import (
    EpsilonGreedyLinear,
    LinearBandit,
    LinearThompson,
    LinUCB,
    explore_scores,
    linear_bandit_problem,
    linucb_scores,
    linucb_update,
    reduce_features,
    regret_curve,
)
from recrl_lib.envs import SimulatorConfig, UserSimulator, World

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def reference(features, n_users, users, items, rewards, *, lam, pooled, intercept, alpha):
    """Per-user ridge, LinUCB and the mean with NumPy and Python loops, one observation at a
    time: (A [U+1, d, d], b [U+1, d], theta [U+1, d], ucb [U+1, N]); row U: unknown user."""
    X = np.asarray(features, dtype=float)
    users, items, rewards = (np.asarray(t).tolist() for t in (users, items, rewards))
    if intercept:
        X = np.hstack([X, np.ones((len(X), 1))])
    d = X.shape[1]
    A = [lam * np.eye(d) for _ in range(n_users + 1)]
    b = [np.zeros(d) for _ in range(n_users + 1)]
    for u, i, r in zip(users, items, rewards):
        A[u] = A[u] + np.outer(X[i], X[i])
        b[u] = b[u] + r * X[i]
    prior = np.zeros(d)
    if pooled:
        A_all, b_all = lam * np.eye(d), np.zeros(d)
        for i, r in zip(items, rewards):
            A_all += np.outer(X[i], X[i])
            b_all += r * X[i]
        prior = np.linalg.solve(A_all, b_all)
    theta = np.stack([np.linalg.solve(A[u], b[u] + lam * prior) for u in range(n_users + 1)])
    ucb = np.zeros((n_users + 1, len(X)))
    for u in range(n_users + 1):
        A_inv = np.linalg.inv(A[u])
        for i, x in enumerate(X):
            ucb[u, i] = x @ theta[u] + alpha * np.sqrt(x @ A_inv @ x)
    return np.stack(A), np.stack(b), theta, ucb


def random_data(n_items=12, n_features=4, n_users=5, m=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n_items, n_features, generator=g)
    users = torch.randint(n_users, (m,), generator=g)
    items = torch.randint(n_items, (m,), generator=g)
    rewards = torch.rand(m, generator=g).round()
    return features, users, items, rewards


@pytest.mark.parametrize("pooled", [True, False])
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("device", DEVICES)
def test_linucb_matches_a_numpy_reference_with_loops(pooled, intercept, device):
    features, users, items, rewards = random_data()
    bandit = LinUCB(features.to(device), 5, alpha=0.7, lam=2.0, pooled=pooled, intercept=intercept)
    bandit.update(users[:25], items[:25], rewards[:25])  # in two batches: sums add up
    bandit.update(users[25:].to(device), items[25:], rewards[25:])
    A, b, theta, ucb = reference(
        features, 5, users, items, rewards, lam=2.0, pooled=pooled, intercept=intercept, alpha=0.7
    )
    np.testing.assert_allclose(bandit.A.numpy(), A, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bandit.b.numpy(), b, rtol=1e-12, atol=1e-12)
    everyone = torch.tensor([0, 1, 2, 3, 4, -1])  # -1: an unknown user, scored by the prior
    scores = bandit.scores(everyone)
    assert scores.device.type == device and scores.shape == (6, 12)
    np.testing.assert_allclose(scores.cpu().numpy(), ucb, rtol=1e-4, atol=1e-5)
    mean = bandit.mean_scores(everyone).cpu().numpy()
    X = np.hstack([features.numpy(), np.ones((12, 1))]) if intercept else features.numpy()
    np.testing.assert_allclose(mean, theta @ X.T, rtol=1e-4, atol=1e-5)
    greedy = LinearBandit(features.to(device), 5, lam=2.0, pooled=pooled, intercept=intercept)
    greedy.update(users, items, rewards)
    torch.testing.assert_close(greedy.scores(everyone), bandit.mean_scores(everyone))


def test_the_pure_update_and_scores_match_the_batched_bandit():
    features, users, items, rewards = random_data(n_users=1)
    X = features.double()
    A, b = torch.eye(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    for i, r in zip(items, rewards):
        A, b = linucb_update(A, b, X[i], r.double())
    bandit = LinUCB(features, 1, alpha=1.5, pooled=False, intercept=False)
    bandit.update(users, items, rewards)
    torch.testing.assert_close(A, bandit.A[0])
    torch.testing.assert_close(b, bandit.b[0])
    expected = bandit.scores(torch.tensor([0]))[0].double()
    torch.testing.assert_close(linucb_scores(A, b, X, 1.5), expected, rtol=1e-5, atol=1e-5)
    # batched over users, and NumPy in, NumPy arithmetic out for the update
    both = linucb_scores(
        torch.stack([A, torch.eye(4, dtype=torch.float64)]), torch.stack([b, b]), X, 1.5
    )
    assert both.shape == (2, 12) and torch.allclose(both[0], linucb_scores(A, b, X, 1.5))
    A_np, b_np = linucb_update(np.eye(2), np.zeros(2), np.array([1.0, 2.0]), 0.5)
    np.testing.assert_allclose(A_np, [[2.0, 2.0], [2.0, 5.0]])
    np.testing.assert_allclose(b_np, [0.5, 1.0])
    with pytest.raises(ValueError, match="one d"):
        linucb_scores(A, b, X[:, :3], 1.0)


def test_thompson_draws_from_the_ridge_posterior():
    features, users, items, rewards = random_data(n_features=3)
    ts = LinearThompson(features, 5, v=0.4, lam=1.0, intercept=False, seed=3)
    ts.update(users, items, rewards)
    n = 20000
    draws = ts.sample_theta(torch.full((n,), 2)).double()  # [n, 3], user 2
    ts._refresh()
    mean, cov = ts.theta[2].double(), 0.4**2 * ts.A_inv[2].double()
    se = (cov.diagonal() / n).sqrt()  # standard error of the sample mean
    assert ((draws.mean(0) - mean).abs() < 5 * se).all()
    # sample covariance: each entry within 5 standard errors, sd(ĉ_jk) = sqrt((c_jj c_kk + c_jk²)/n)
    sample_cov = torch.cov(draws.T)
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    assert ((sample_cov - cov).abs() < 5 * se_cov).all()
    # v = 0: the mean; one seed, one stream
    exact = LinearThompson(features, 5, v=0.0, intercept=False)
    exact.update(users, items, rewards)
    torch.testing.assert_close(exact.scores(torch.arange(5)), exact.mean_scores(torch.arange(5)))
    again = LinearThompson(features, 5, v=0.4, lam=1.0, intercept=False, seed=3)
    again.update(users, items, rewards)
    assert torch.equal(again.sample_theta(torch.full((n,), 2)).double(), draws)


def test_epsilon_greedy_explores_with_probability_epsilon():
    scores = torch.arange(10.0).expand(4000, -1)
    g = torch.Generator().manual_seed(0)
    chosen = explore_scores(scores, 0.2, g).argmax(1)
    explored = (chosen != 9).float().mean()  # an exploring row picks 9 too, 1 time in 10
    assert abs(explored - 0.2 * 0.9) < 4 * (0.18 * 0.82 / 4000) ** 0.5
    assert torch.equal(explore_scores(scores, 0.0, g), scores)
    features, users, items, rewards = random_data()
    bandit = EpsilonGreedyLinear(features, 5, epsilon=1.0, seed=1)
    picks = bandit.scores(torch.zeros(6000, dtype=torch.long)).argmax(1)
    counts = torch.bincount(picks, minlength=12).double()
    chi2 = ((counts - 500) ** 2 / 500).sum()  # 11 degrees of freedom: P(chi2 > 40) < 1e-4
    assert chi2 < 40
    with pytest.raises(ValueError, match="epsilon must be in"):
        EpsilonGreedyLinear(features, 5, epsilon=1.5)


def regret_per_round(make, seed: int, rounds: int = 400, replicates: int = 16) -> torch.Tensor:
    """[rounds]: the mean regret over ``replicates`` independent copies of problem ``seed``."""
    arms, theta = linear_bandit_problem(seed)
    return regret_curve(make(arms), arms, theta, rounds=rounds, replicates=replicates, seed=seed)


def test_linucb_and_thompson_find_the_optimal_arm_and_greedy_does_not():
    options = dict(pooled=False, intercept=False)
    rules = {
        "LinUCB": lambda X: LinUCB(X, 16, alpha=1.0, **options),
        "Thompson": lambda X: LinearThompson(X, 16, v=0.3, seed=1, **options),
        "greedy": lambda X: EpsilonGreedyLinear(X, 16, epsilon=0.0, **options),
        "random": lambda X: EpsilonGreedyLinear(X, 16, epsilon=1.0, seed=2, **options),
    }
    regret = {
        name: torch.stack([regret_per_round(make, s) for s in range(3)])
        for name, make in rules.items()
    }
    for name in ("LinUCB", "Thompson"):
        first, second = regret[name][:, :200].sum(1), regret[name][:, 200:].sum(1)
        assert (second < 0.5 * first).all(), (name, first, second)  # sublinear, in every problem
        total = regret[name].sum(1).mean()
        assert total < 0.5 * regret["greedy"].sum(1).mean(), name  # greedy gets stuck
        assert total < 0.1 * regret["random"].sum(1).mean(), name  # random never learns
    # random's regret is linear: as large in the second half as in the first
    half = regret["random"].sum(0)
    assert half[200:].sum() > 0.9 * half[:200].sum()


def test_reduce_features_is_a_deterministic_pca():
    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(50, 3, generator=g) @ torch.randn(3, 20, generator=g)  # rank 3
    vectors += 0.01 * torch.randn(50, 20, generator=g)
    z = reduce_features(vectors, 3)
    assert z.shape == (50, 3) and z.dtype == torch.float32
    assert torch.equal(z, reduce_features(vectors.clone(), 3))
    assert z.norm(dim=1).mean().item() == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(z.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    # the components are the principal ones: uncorrelated, variances in decreasing order, and
    # (rank 3 + noise) they keep nearly all of the variance
    cov = torch.cov(z.T.double())
    assert (cov - torch.diag(cov.diagonal())).abs().max() < 1e-6
    assert (cov.diagonal().diff() < 0).all()
    centred = vectors.double() - vectors.double().mean(0)
    s = torch.linalg.svdvals(centred)
    assert (s[:3] ** 2).sum() / (s**2).sum() > 0.99
    assert reduce_features(vectors, 1).shape == (50, 1)
    with pytest.raises(ValueError, match="d must be an int"):
        reduce_features(vectors, 21)
    with pytest.raises(ValueError, match="float tensor"):
        reduce_features(torch.ones(5, dtype=torch.long), 1)


def test_a_bandit_policy_serves_the_logged_in_user_and_skips_the_session_log():
    world = World.random(n_users=10, n_items=15, seed=0)
    sim = UserSimulator(
        world, SimulatorConfig(horizon=5, observe_user=True), batch_size=6, device="cpu"
    )
    obs = sim.reset(users=torch.arange(6), seed=0)
    obs, *_ = sim.step(torch.arange(6))
    features, users, items, rewards = random_data(n_items=15, n_users=10)
    bandit = LinUCB(features, 10)
    bandit.update(users, items, rewards)
    policy = bandit.policy()
    assert not policy.oracle and policy.name == "LinUCB (α = 1)"
    torch.testing.assert_close(policy.score(obs), bandit.scores(torch.arange(6)))
    actions = policy(obs)
    assert (actions != torch.arange(6)).all()  # the item shown at step 1 is not shown again
    unknown = obs | {"user": torch.full_like(obs["user"], -1)}
    assert torch.allclose(policy.score(unknown), policy.score(unknown)[:1].expand(6, -1))
    with pytest.raises(KeyError, match="observe_user=True"):
        policy({k: v for k, v in obs.items() if k != "user"})


def test_bad_inputs_are_clear_errors():
    features, users, items, rewards = random_data()
    with pytest.raises(ValueError, match=r"\[N, F\] float tensor"):
        LinUCB(features[0], 5)
    with pytest.raises(ValueError, match="NaN"):
        LinUCB(features * float("nan"), 5)
    with pytest.raises(ValueError, match="lam > 0"):
        LinUCB(features, 5, lam=0.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        LinUCB(features, 5, alpha=-1.0)
    with pytest.raises(ValueError, match="v must be >= 0"):
        LinearThompson(features, 5, v=-0.1)
    bandit = LinUCB(features, 5)
    with pytest.raises(ValueError, match=r"must be \[M\] each"):
        bandit.update(users, items[:3], rewards)
    with pytest.raises(ValueError, match="known ids in 0..4"):
        bandit.update(users + 5, items, rewards)
    with pytest.raises(ValueError, match="items must be ids"):
        bandit.update(users, items + 12, rewards)
    with pytest.raises(ValueError, match="NaN or inf"):
        bandit.update(users, items, rewards / 0 - rewards / 0)
    with pytest.raises(ValueError, match="integer ids"):
        bandit.update(users.float(), items, rewards)
    with pytest.raises(ValueError, match="-1 \\(unknown\\)"):
        bandit.scores(torch.tensor([7]))
    bandit.update(users[:0], items[:0], rewards[:0])  # nothing to add is fine
    assert bandit.n_observations == 0
