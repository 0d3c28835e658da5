"""The batched simulator, its Gymnasium wrappers and torch adapter, the genre MDP, the world."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from scipy import stats

from recrl_lib.agents import evaluate_policy, random_policy
from recrl_lib.datasets import load_movielens_100k
from recrl_lib.envs import (
    RecommenderEnv,
    RecommenderVectorEnv,
    SimulatorConfig,
    TabularMDPEnv,
    TorchVectorEnv,
    UserSimulator,
    World,
    build_world,
    genre_mdp,
    kmeans,
    shown_items,
    value_iteration,
)


@pytest.fixture(scope="module")
def world():
    return World.random(n_users=30, n_items=25, seed=0)


def make_sim(world, batch_size=4, seed=0, **config):
    config = SimulatorConfig(**config)
    return UserSimulator(world, config, batch_size=batch_size, seed=seed, device="cpu")


def test_same_seed_same_numbers(world):
    def play(seed):
        sim = make_sim(world, batch_size=8, seed=seed)
        sim.reset()
        out = []
        for t in range(12):
            obs, r, term, trunc, info = sim.step(torch.full((8,), t % world.n_items))
            out.append(torch.cat([r, info["rating"], sim.budget]))
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
    assert set(info) == {"clicked_item", "rating"}  # nothing hidden leaks through info


def test_a_returning_user_is_observed_by_id_only(world):
    sim = make_sim(world, batch_size=4, observe_user=True)
    users = torch.tensor([3, 0, 3, 7])
    obs = sim.reset(users=users, seed=0)
    assert obs["user"].dtype == torch.long and torch.equal(obs["user"][:, 0], users)
    obs, *_ = sim.step(torch.arange(4))
    assert torch.equal(obs["user"][:, 0], users)  # the id stays; the hidden vector is not shown
    vectors = world.sample_users(0, 4, torch.Generator().manual_seed(1))
    synthetic = sim.reset(user_vectors=vectors, seed=0)
    assert (synthetic["user"] == -1).all()
    assert "user" not in make_sim(world, batch_size=4).reset(seed=0)


def test_the_default_observation_is_the_whole_session_log(world):
    sim = make_sim(world, batch_size=2, horizon=7, budget_init=100.0)
    obs = sim.reset(seed=0)
    assert obs["items"].shape == (2, 7)
    for t in range(7):
        obs, *_ = sim.step(torch.tensor([t, t + 10]))
    assert obs["mask"].all() and torch.equal(obs["items"][1], torch.arange(10, 17))
    shown = shown_items(obs, world.n_items)
    assert shown.sum(1).tolist() == [7, 7] and shown[1, 10:17].all()


def test_shown_items_marks_every_logged_item_whatever_the_padding():
    items = torch.tensor([[0, 3, 0, 0], [0, 0, 2, 0], [7, 0, 0, 0]])
    left = torch.tensor([[False, False, True, True], [False, True, True, True], [False] * 4])
    right = left.flip(1)  # pad_histories pads on the right
    shown = shown_items({"items": items, "mask": left}, 8)
    assert shown[0].nonzero().flatten().tolist() == [0]  # item 0 shown twice, padding ignored
    assert shown[1].nonzero().flatten().tolist() == [0, 2]
    assert not shown[2].any()
    flipped = shown_items({"items": items.flip(1), "mask": right}, 8)
    assert torch.equal(flipped, shown)


def test_invalid_actions_and_configs_are_clear_errors(world):
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
    with pytest.raises(ValueError, match="history_len must be >= 1 or None"):
        SimulatorConfig(history_len=0)


def test_slate_click_shares_follow_the_logit_model(world):
    sim = make_sim(world, batch_size=20_000, slate_size=2, seed=1)
    sim.reset(users=torch.zeros(20_000, dtype=torch.long))
    slate = torch.tensor([[3, 7]]).expand(20_000, 2)
    logits = sim.logits(slate)[:1]  # every row is the same user in the same state
    expected = torch.softmax(torch.cat([torch.zeros(1, 1), logits], 1), 1)[0]
    _, reward, _, _, info = sim.step(slate)
    observed = torch.stack([(info["clicked_item"] == i).float().mean() for i in (-1, 3, 7)])
    torch.testing.assert_close(observed, expected, atol=0.015, rtol=0)


def test_logits_and_quality_follow_the_documented_formulas(world):
    sim = make_sim(world, batch_size=3, satiation_weight=0.7, clickbait_appeal=1.3)
    sim.reset(users=torch.tensor([0, 1, 2]))
    sim.satiation = torch.rand(3, world.genres.shape[1], generator=torch.Generator().manual_seed(0))
    items = torch.tensor([[0, 5], [7, 9], [11, 24]])
    c, w = sim.config, world
    affinity = w.affinity(sim.user_vectors, items)
    genres = w.genres[items]
    satiated = (sim.satiation[:, None, :] * genres).sum(-1) / genres.sum(-1).clamp(min=1)
    logit = 1.5 * affinity + 1.3 * w.clickbait[items] - 0.7 * satiated + c.click_bias
    torch.testing.assert_close(sim.logits(items), logit)
    quality = 0.5 * w.item_quality[items] + 0.5 * torch.sigmoid(affinity)
    quality[w.clickbait[items]] = 0.0
    torch.testing.assert_close(sim.quality(items), quality)
    # the all-items fast path agrees with the per-item one
    every = torch.arange(w.n_items).expand(3, -1)
    torch.testing.assert_close(sim.click_probabilities(), torch.sigmoid(sim.logits(every)))


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


def test_budget_falls_on_clickbait_and_misses_and_sessions_end(world):
    bait = int(torch.nonzero(world.clickbait)[0])
    sim = make_sim(world, batch_size=64, clickbait_appeal=0.0)
    sim.reset()
    start = sim.budget.clone()
    sim.step(torch.full((64,), bait))
    assert (sim.budget < start).all()  # clicked clickbait (quality 0) or missed: both drain
    # every session ends: by its budget or at the horizon
    result = evaluate_policy(make_sim(world, batch_size=16, horizon=30), random_policy(25))
    assert (result["length"] <= 30).all() and (result["length"] >= 1).all()


def test_evaluate_policy_reports_the_clickbait_share_and_users(world):
    bait, good = int(torch.nonzero(world.clickbait)[0]), int(torch.nonzero(~world.clickbait)[0])
    sim = make_sim(world, batch_size=8, horizon=6)
    always = lambda item: lambda obs: torch.full((obs["items"].shape[0],), item)  # noqa: E731
    users = torch.arange(8)
    assert (evaluate_policy(sim, always(bait), users=users)["clickbait"] == 1.0).all()
    result = evaluate_policy(sim, always(good), users=users)
    assert (result["clickbait"] == 0.0).all() and result["user"].tolist() == list(range(8))


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


def test_the_horizon_ends_the_session_as_terminated(world):
    sim = make_sim(world, batch_size=2, horizon=3, click_bias=20.0, budget_init=100.0)
    sim.reset()
    for t in range(3):
        obs, _, terminated, truncated, _ = sim.step(torch.tensor([t, t + 1]))
        assert not truncated.any()  # the simulator never cuts: the horizon is the task's end
    assert terminated.all() and (obs["step"] == 1.0).all()


def test_drift_moves_the_user_toward_clicked_items(world):
    sim = make_sim(world, batch_size=1, click_bias=20.0, drift=0.3)
    sim.reset(users=torch.tensor([0]))
    item = world.item_vectors[5]
    before_vector = sim.user_vectors[0].clone()
    before = torch.cosine_similarity(before_vector, item, dim=0)
    sim.step(torch.tensor([5]))
    assert torch.cosine_similarity(sim.user_vectors[0], item, dim=0) > before
    # p ← p + η (q · ‖p‖ / ‖q‖ − p), as documented
    target = item * before_vector.norm() / item.norm()
    torch.testing.assert_close(sim.user_vectors[0], before_vector + 0.3 * (target - before_vector))


def test_a_snapshot_restores_the_simulator_exactly(world):
    sim = make_sim(world, batch_size=6, seed=2)
    sim.reset()
    for t in range(3):
        sim.step(torch.arange(6) + t)
    snapshot = sim.state_dict()
    actions = [torch.arange(6) + 7 + t for t in range(5)]
    first = [sim.step(a)[1] for a in actions]
    sim.load_state_dict(snapshot)
    again = [sim.step(a)[1] for a in actions]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    with pytest.raises(ValueError, match="another batch size"):
        make_sim(world, batch_size=3).load_state_dict(snapshot)


def test_a_user_pool_keeps_every_drawn_user_inside_it(world):
    pool = torch.tensor([2, 5, 11])
    sim = UserSimulator(world, batch_size=64, seed=0, device="cpu", user_pool=pool)
    seen = set()
    for _ in range(5):  # resets of every row, and auto-resets of some rows
        sim.reset()
        seen |= set(sim.user_ids.tolist())
        sim.reset(rows=torch.arange(64) % 2 == 0)
        seen |= set(sim.user_ids.tolist())
    assert seen == {2, 5, 11}
    everyone = UserSimulator(world, batch_size=64, seed=0, device="cpu")
    everyone.reset()  # the default pool is every user, drawn as before the pool existed
    g = torch.Generator().manual_seed(0)
    assert torch.equal(everyone.user_ids, torch.randint(world.n_users, (64,), generator=g))
    vector_env = RecommenderVectorEnv(world, num_envs=16, device="cpu", user_pool=pool)
    vector_env.reset(seed=0)  # the Gymnasium wrappers pass the pool on
    assert set(vector_env.sim.user_ids.tolist()) <= {2, 5, 11}
    single = RecommenderEnv(world, device="cpu", user_pool=pool)
    drawn = set()
    for seed in range(8):
        single.reset(seed=seed)
        drawn.add(single.sim.user_ids.item())
    assert drawn <= {2, 5, 11}
    sim.reset(users=torch.full((64,), 7))  # an explicit user is allowed outside the pool
    assert (sim.user_ids == 7).all()
    for bad in (
        torch.tensor([], dtype=torch.long),
        torch.tensor([0, world.n_users]),
        torch.tensor([[1, 2]]),
        torch.tensor([0.5]),
        torch.ones(world.n_users, dtype=torch.bool),
    ):
        with pytest.raises(ValueError, match="user_pool must be"):
            UserSimulator(world, device="cpu", user_pool=bad)


def test_cohorts_and_synthetic_users(world):
    labels = kmeans(torch.cat([torch.randn(20, 2) - 5, torch.randn(20, 2) + 5]), 2)
    assert len(set(labels[:20].tolist())) == 1 and labels[0] != labels[-1]
    users = world.sample_users(1, 6, torch.Generator().manual_seed(0))
    sim = make_sim(world, batch_size=6)
    sim.reset(user_vectors=users)
    assert torch.equal(sim.user_vectors, users) and (sim.user_ids == -1).all()
    with pytest.raises(ValueError, match="cohort must be"):
        world.sample_users(world.n_cohorts, 1, torch.Generator())


# ----------------------------------------------------------------------------- Gymnasium


def test_gymnasium_env_checker(world):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*alternative render modes.*")
        check_env(RecommenderEnv(world))
        check_env(RecommenderEnv(world, SimulatorConfig(observe_features=True)))
        check_env(RecommenderEnv(world, SimulatorConfig(observe_user=True)))
    # Slates: the checker samples MultiDiscrete actions, which may repeat an item (an error
    # here by design), so the slate env is checked by hand.
    env = RecommenderEnv(world, SimulatorConfig(slate_size=3))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(np.array([1, 2, 3]))
    assert env.observation_space.contains(obs) and isinstance(reward, float)
    assert "budget" not in info


def _session(env, seed=None):
    obs, _ = env.reset(seed=seed)
    rewards = []
    for t in range(8):
        obs, reward, terminated, truncated, info = env.step(t)
        rewards.append((info["clicked_item"], info["rating"]))
    return rewards


def test_unseeded_copies_differ_and_a_seeded_reset_repeats(world):
    config = SimulatorConfig(budget_init=100.0)
    copies = [_session(RecommenderEnv(world, config)) for _ in range(6)]
    assert len({tuple(c) for c in copies}) > 1  # each copy has its own stream
    env = RecommenderEnv(world, config)
    assert _session(env, seed=5) == _session(env, seed=5)
    assert _session(env, seed=5) != _session(env, seed=6)
    # eight copies in a SyncVectorEnv, reset without a seed, play different users' sessions
    vec = gym.vector.SyncVectorEnv([lambda: RecommenderEnv(world, config)] * 8)
    vec.reset()
    _, _, _, _, infos = vec.step(np.arange(8))
    users = [vec.envs[i].sim.user_ids.item() for i in range(8)]
    assert len(set(users)) > 1


def test_vector_env_auto_resets_and_repeats_with_a_seed(world):
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
    first = env.reset(seed=3)[0]["items"], env.step(np.arange(3))[1]
    again = env.reset(seed=3)[0]["items"], env.step(np.arange(3))[1]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))


# ----------------------------------------------------------------------------- torch adapter


def test_torch_vector_env_returns_final_and_next_observations(world):
    sim = make_sim(world, batch_size=3, horizon=2, budget_init=100.0)
    env = TorchVectorEnv(sim)
    obs = env.reset(seed=0)
    obs, next_obs, reward, terminated, truncated = env.step(torch.tensor([0, 1, 2]))
    assert torch.equal(obs["items"], next_obs["items"]) and not terminated.any()
    obs, next_obs, reward, terminated, truncated = env.step(torch.tensor([3, 4, 5]))
    assert terminated.all()
    assert next_obs["mask"].all() and torch.equal(next_obs["items"][:, -1], torch.tensor([3, 4, 5]))
    assert not obs["mask"].any() and (obs["step"] == 0).all()  # new sessions to act on


def test_torch_vector_env_agrees_with_the_gymnasium_vector_env(world):
    config = SimulatorConfig(horizon=3)
    gym_env = RecommenderVectorEnv(world, config, num_envs=4, device="cpu")
    through_gym = TorchVectorEnv(gym_env)
    direct = TorchVectorEnv(UserSimulator(world, config, batch_size=4, device="cpu"))
    first = through_gym.reset(seed=1)
    direct.sim.load_state_dict(gym_env.sim.state_dict())  # the same users, the same stream
    for t in range(5):
        actions = torch.arange(4) + 4 * t
        a, b = through_gym.step(actions), direct.step(actions)
        for x, y in zip(a, b):
            if isinstance(x, dict):
                assert x.keys() == y.keys()
                assert all(torch.equal(x[k], y[k]) and x[k].dtype == y[k].dtype for k in x)
            else:
                assert torch.equal(x, y)
    assert first["mask"].dtype == torch.bool and first["items"].dtype == torch.int64


def test_torch_vector_env_wraps_a_gymnasium_env_and_rejects_what_it_cannot(world):
    env = TorchVectorEnv.make("CartPole-v1", num_envs=2)
    obs = env.reset(seed=0)
    assert obs["obs"].shape == (2, 4) and env.n_actions == 2 and env.obs_dim == 4
    finals = 0
    for _ in range(60):  # random actions end CartPole episodes quickly
        obs, next_obs, reward, terminated, truncated = env.step(torch.randint(2, (2,)))
        for i in torch.nonzero(terminated | truncated).flatten().tolist():
            finals += 1
            assert not torch.equal(obs["obs"][i], next_obs["obs"][i])
    assert finals > 0
    with pytest.raises(TypeError, match="Discrete action space"):
        TorchVectorEnv.make("Pendulum-v1", num_envs=2)
    next_step = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    with pytest.raises(ValueError, match="same-step auto-reset"):
        TorchVectorEnv(next_step)


# ----------------------------------------------------------------------------- genre MDP


def small_mdp(world):
    return genre_mdp(world, genres=("g0", "g1", "g2"), genre_names=("g0", "g1", "g2", "g3", "g4"))


def test_mdp_transitions_follow_the_rules(world):
    mdp = small_mdp(world)
    np.testing.assert_allclose(mdp.P.sum(-1), 1.0)
    index = {name: i for i, name in enumerate(mdp.state_names)}
    s = index["b=2,last=none"]
    # a genre: click -> (b + 1, that genre) with reward 1, miss -> (b - 1, last unchanged)
    hit, miss = index["b=3,last=g0"], index["b=1,last=none"]
    p = mdp.P[s, 0, hit]
    assert 0 < p < 1 and mdp.P[s, 0, miss] == pytest.approx(1 - p)
    assert mdp.R_next[s, 0, hit] == 1.0 and mdp.R_next[s, 0, miss] == 0.0
    # repeating the last genre is less likely to be clicked (satiation)
    assert mdp.P[index["b=2,last=g0"], 0, index["b=3,last=g0"]] < p
    # clickbait always drains one level and pays its click probability
    bait = mdp.n_actions - 1
    assert mdp.P[s, bait, miss] == 1.0 and 0 < mdp.R[s, bait] < 1
    # budget 0 is terminal and absorbing
    for b0 in np.flatnonzero(mdp.terminal):
        assert (mdp.P[b0, :, b0] == 1).all() and (mdp.R[b0] == 0).all()


def test_mdp_env_samples_transitions_with_the_probabilities_of_p(world):
    mdp = small_mdp(world)
    env = TabularMDPEnv(mdp)
    env.reset(seed=0)
    s = mdp.state_names.index("b=2,last=g1")
    counts = np.zeros(mdp.n_states)
    for _ in range(4000):
        env.state = s
        next_state, *_ = env.step(0)
        counts[next_state] += 1
    support = mdp.P[s, 0] > 0
    assert counts[~support].sum() == 0
    chi2 = stats.chisquare(counts[support], 4000 * mdp.P[s, 0, support])
    assert chi2.pvalue > 0.001


def test_q_star_is_a_fixed_point(world):
    mdp = small_mdp(world)
    q, v, _ = value_iteration(mdp)
    bellman = mdp.R + mdp.gamma * mdp.P @ q.max(1)
    np.testing.assert_allclose(q, bellman, atol=1e-8)
    assert (q[mdp.terminal] == 0).all()


# ----------------------------------------------------------------------------- the world


def test_build_world_is_reality_fitted_to_all_ratings(atomic_dir, tmp_path):
    data = load_movielens_100k(atomic_dir)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    options = dict(dim=4, epochs=3, n_cohorts=2, progress=False, cache_dir=tmp_path)
    world = build_world(data, **options)
    assert torch.equal(torch.rand(3), expected_next)  # the global random state is untouched
    assert world.user_vectors.shape == (3, 4) and world.item_vectors.shape == (5, 4)
    # quality = (mean rating shrunk with 10 pseudo-ratings at the global mean − 1) / 4
    r = data.ratings
    prior = r["rating"].mean()
    item0 = r[r["item"] == 0]["rating"]
    shrunk = (item0.sum() + 10 * prior) / (len(item0) + 10)
    assert world.item_quality[0].item() == pytest.approx((shrunk - 1) / 4, rel=1e-6)
    assert world.popularity.tolist() == r.groupby("item").size().tolist()
    raw = world.user_vectors @ world.item_vectors.T + world.item_bias
    standardised = (raw - world.affinity_mean) / world.affinity_std
    assert standardised.mean().abs() < 1e-5 and standardised.std().item() == pytest.approx(1.0)
    fresh = build_world(data, **(options | {"cache_dir": None}))
    assert torch.equal(world.user_vectors, fresh.user_vectors)  # the same seed, the same fit
    on_train = build_world(data, **(options | {"ratings": data.train}))
    assert not torch.equal(world.item_quality, on_train.item_quality)
    # a second identical call reads the cache instead of fitting again: mark the cached copy
    files = tmp_path.glob("world-*.pt")
    (path,) = [p for p in files if torch.load(p)["item_quality"].equal(world.item_quality)]
    saved = torch.load(path)
    torch.save(saved | {"popularity": torch.full_like(saved["popularity"], -1.0)}, path)
    assert (build_world(data, **options).popularity == -1).all()
    assert len(list(tmp_path.glob("world-*.pt"))) == 2  # all ratings, and the training split


def test_an_unwritable_cache_only_costs_time(atomic_dir, tmp_path):
    data = load_movielens_100k(atomic_dir)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")  # the cache "folder" cannot be created
    options = dict(dim=4, epochs=2, n_cohorts=2, progress=False)
    with pytest.warns(UserWarning, match="RECRL_CACHE_DIR"):
        world = build_world(data, cache_dir=blocked / "worlds", **options)
    assert world.user_vectors.shape == (3, 4)
