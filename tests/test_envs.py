"""The batched simulator, its Gymnasium wrappers, the genre MDP and the baselines."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from recrl_lib.agents import (
    evaluate_policy,
    greedy_oracle,
    most_popular,
    oracle_planner,
    population_planner,
    random_policy,
)
from recrl_lib.envs import (
    RecommenderEnv,
    RecommenderVectorEnv,
    SimulatorConfig,
    UserSimulator,
    World,
    genre_mdp,
    kmeans,
    value_iteration,
)


@pytest.fixture(scope="module")
def world():
    return World.random(n_users=30, n_items=25, seed=0)


def make_sim(world, batch_size=4, seed=0, **config):
    return UserSimulator(world, SimulatorConfig(**config), batch_size=batch_size, seed=seed, device="cpu")  # fmt: skip


def test_same_seed_same_numbers(world):
    def play(seed):
        sim = make_sim(world, batch_size=8, seed=seed)
        sim.reset()
        out = []
        for t in range(12):
            obs, r, term, trunc, info = sim.step(torch.full((8,), t % world.n_items))
            out.append(torch.cat([r, info["rating"], info["budget"]]))
        return torch.stack(out)

    assert torch.equal(play(3), play(3))
    assert not torch.equal(play(3), play(4))


def test_shapes_and_dtypes(world):
    sim = make_sim(world, batch_size=5, history_len=6, observe_features=True)
    obs = sim.reset()
    assert obs["items"].shape == (5, 6) and obs["items"].dtype == torch.long
    assert obs["mask"].dtype == torch.bool and not obs["mask"].any()
    assert obs["features"].shape == (5, world.user_features.shape[1])
    obs, reward, terminated, truncated, info = sim.step(torch.arange(5))
    assert reward.shape == terminated.shape == truncated.shape == (5,)
    assert reward.dtype == torch.float32 and terminated.dtype == torch.bool
    assert obs["mask"][:, -1].all() and not obs["mask"][:, :-1].any()
    assert torch.equal(obs["items"][:, -1], torch.arange(5))
    clicked = reward.bool()
    assert ((info["rating"] >= 1) == clicked).all()
    assert torch.equal(obs["ratings"][:, -1], info["rating"] / 5)


def test_invalid_actions_are_clear_errors(world):
    sim = make_sim(world, batch_size=3)
    sim.reset()
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        sim.step(torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="item ids in 0..24"):
        sim.step(torch.tensor([0, 1, 25]))
    with pytest.raises(TypeError, match="integer item ids"):
        sim.step(torch.zeros(3))
    slate = make_sim(world, batch_size=2, slate_size=3)
    slate.reset()
    with pytest.raises(ValueError, match="same item twice"):
        slate.step(torch.tensor([[1, 2, 3], [4, 4, 5]]))
    slate.step(torch.tensor([[1, 2, 3], [4, 5, 6]]))  # valid slates step fine


def test_slate_click_shares_follow_the_logit_model(world):
    sim = make_sim(world, batch_size=20_000, slate_size=2, seed=1)
    sim.reset(users=torch.zeros(20_000, dtype=torch.long))
    slate = torch.tensor([[3, 7]]).expand(20_000, 2)
    logits = sim.logits(slate)[:1]  # every row is the same user in the same state
    expected = torch.softmax(torch.cat([torch.zeros(1, 1), logits], 1), 1)[0]
    _, reward, _, _, info = sim.step(slate)
    observed = torch.stack([(info["clicked_item"] == i).float().mean() for i in (-1, 3, 7)])
    torch.testing.assert_close(observed, expected, atol=0.015, rtol=0)


def test_repeating_a_genre_raises_its_satiation_and_lowers_the_click_logit(world):
    sim = make_sim(world, batch_size=1, click_bias=10.0)  # always clicks
    sim.reset(users=torch.tensor([0]))
    item = torch.tensor([0])
    genre = world.genres[0].bool()
    before_logit = sim.logits(item[:, None]).item()
    sim.step(item)
    first = sim.satiation[0, genre].clone()
    sim.step(item)
    assert (sim.satiation[0, genre] > first).all() and (first > 0).all()
    assert sim.logits(item[:, None]).item() < before_logit


def test_budget_falls_on_clickbait_and_misses_and_episodes_end(world):
    bait = int(torch.nonzero(world.clickbait)[0])
    sim = make_sim(world, batch_size=64, clickbait_appeal=0.0)
    sim.reset()
    start = sim.budget.clone()
    _, reward, _, _, info = sim.step(torch.full((64,), bait))
    assert (info["budget"] < start).all()  # clicked clickbait (quality 0) or missed: both drain
    # every session ends: by budget (terminated) or at the horizon (truncated)
    result = evaluate_policy(make_sim(world, batch_size=16, horizon=30), random_policy)
    assert (result["length"] <= 30).all() and (result["length"] >= 1).all()


def test_evaluate_policy_reports_the_clickbait_share(world):
    bait, good = int(torch.nonzero(world.clickbait)[0]), int(torch.nonzero(~world.clickbait)[0])
    sim = make_sim(world, batch_size=8, horizon=6)
    always = lambda item: lambda sim, obs: torch.full((sim.batch_size,), item)  # noqa: E731
    assert (evaluate_policy(sim, always(bait))["clickbait"] == 1.0).all()
    assert (evaluate_policy(sim, always(good))["clickbait"] == 0.0).all()


def test_session_totals_count_clicks_misses_and_ratings(world):
    sim = make_sim(world, batch_size=32, horizon=20)
    obs = sim.reset(seed=0)
    assert (obs["session"] == 0).all()
    clicks, ratings = torch.zeros(32), torch.zeros(32)
    for t in range(6):
        obs, reward, terminated, truncated, info = sim.step(torch.full((32,), t))
        clicks += reward
        ratings += info["rating"]
    expected = torch.stack([clicks, 6 - clicks, ratings / 5], dim=1) / 20
    torch.testing.assert_close(obs["session"], expected)
    assert (sim.reset(rows=torch.arange(32) < 16)["session"][:16] == 0).all()


def test_good_items_refill_the_budget(world):
    sim = make_sim(world, batch_size=1, click_bias=20.0)  # always clicks
    sim.reset(users=torch.tensor([0]))
    best = int(torch.argmax(torch.where(world.clickbait, -1.0, world.item_quality)))
    before = sim.budget.item()
    sim.step(torch.tensor([best]))
    assert sim.budget.item() > before


def test_truncation_at_horizon(world):
    sim = make_sim(world, batch_size=2, horizon=3, click_bias=20.0, budget_init=100.0)
    sim.reset()
    for t in range(3):
        _, _, terminated, truncated, _ = sim.step(torch.tensor([t, t + 1]))
    assert truncated.all() and not terminated.any()


def test_drift_moves_the_user_toward_clicked_items(world):
    sim = make_sim(world, batch_size=1, click_bias=20.0, drift=0.3)
    sim.reset(users=torch.tensor([0]))
    item = world.item_vectors[5]
    before = torch.cosine_similarity(sim.user_vectors[0], item, dim=0)
    sim.step(torch.tensor([5]))
    assert torch.cosine_similarity(sim.user_vectors[0], item, dim=0) > before


def test_cohorts_and_synthetic_users(world):
    labels = kmeans(torch.cat([torch.randn(20, 2) - 5, torch.randn(20, 2) + 5]), 2)
    assert len(set(labels[:20].tolist())) == 1 and labels[0] != labels[-1]
    users = world.sample_users(1, 6, torch.Generator().manual_seed(0))
    sim = make_sim(world, batch_size=6)
    sim.reset(user_vectors=users)
    assert torch.equal(sim.user_vectors, users) and (sim.user_ids == -1).all()
    with pytest.raises(ValueError, match="cohort must be"):
        world.sample_users(world.n_cohorts, 1, torch.Generator())


def test_gymnasium_env_checker(world):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*alternative render modes.*")
        check_env(RecommenderEnv(world))
        check_env(RecommenderEnv(world, SimulatorConfig(observe_features=True)))
    # Slates: the checker samples MultiDiscrete actions, which may repeat an item (an error
    # here by design), so the slate env is checked by hand.
    env = RecommenderEnv(world, SimulatorConfig(slate_size=3))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(np.array([1, 2, 3]))
    assert env.observation_space.contains(obs) and isinstance(reward, float)


def test_vector_env_auto_resets(world):
    env = RecommenderVectorEnv(world, SimulatorConfig(horizon=4), num_envs=3, device="cpu")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    for _ in range(4):
        obs, reward, terminated, truncated, infos = env.step(env.action_space.sample())
    done = terminated | truncated
    assert done.all()  # the horizon ends every session at step 4 at the latest
    assert (infos["_final_obs"] == done).all()
    assert infos["final_obs"]["mask"][done].sum(1).min() >= 1  # the finished sessions' history
    assert obs["mask"].sum() == 0 and (obs["step"] == 0).all()  # ... and fresh sessions now


def test_mdp_rows_sum_to_one_and_q_star_is_a_fixed_point(world):
    mdp = genre_mdp(world, genres=("g0", "g1", "g2"), genre_names=("g0", "g1", "g2", "g3", "g4"))
    np.testing.assert_allclose(mdp.P.sum(-1), 1.0)
    q, v, _ = value_iteration(mdp)
    bellman = mdp.R + mdp.gamma * mdp.P @ q.max(1)
    np.testing.assert_allclose(q, bellman, atol=1e-8)
    assert (q[mdp.terminal] == 0).all()


def test_baselines_return_valid_unshown_actions(world):
    sim = make_sim(world, batch_size=6)
    obs = sim.reset()
    policies = [random_policy, most_popular, greedy_oracle, oracle_planner(0.5), population_planner()]  # fmt: skip
    for policy in policies:
        actions = policy(sim, obs)
        assert actions.shape == (6,) and actions.dtype == torch.long
    sim.step(greedy_oracle(sim, obs))
    shown = sim.hist_items[:, -1]
    assert (greedy_oracle(sim, sim.observe()) != shown).all()


def test_greedy_oracle_maximises_the_immediate_click_probability(world):
    sim = make_sim(world, batch_size=6)
    obs = sim.reset()
    probs = sim.click_probabilities()
    chosen = greedy_oracle(sim, obs)
    assert torch.equal(probs.gather(1, chosen[:, None])[:, 0], probs.max(1).values)
    # the [B, N] fast path agrees with the per-item logits
    items = torch.arange(world.n_items).expand(6, -1)
    torch.testing.assert_close(probs, torch.sigmoid(sim.logits(items)))
