"""DQN pieces against hand computations, the training loop's bookkeeping, and the MLP head on
a small Gymnasium task."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import torch

from recrl_lib.agents import EpsilonSchedule
from recrl_lib.agents.dqn import DQN, DQNConfig, MLPQNetwork, RecQNetwork, ReplayBuffer, td_target
from recrl_lib.encoders import ItemTable
from recrl_lib.envs import SimulatorConfig, TorchVectorEnv, UserSimulator, World


def test_td_target_plain_and_double_by_hand():
    returns = torch.tensor([1.0, 0.5, 2.0])
    discount = torch.tensor([0.9, 0.0, 0.81])  # row 1 terminated; row 2 a 2-step return
    online = torch.tensor([[1.0, 3.0], [5.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([[2.0, 1.0], [7.0, 7.0], [4.0, 1.0]])
    # plain: max of target -> 2, (ignored), 4
    plain = td_target(returns, discount, online, target, double=False)
    torch.testing.assert_close(plain, torch.tensor([1 + 0.9 * 2, 0.5, 2 + 0.81 * 4]))
    # double: online picks a* = 1, 0, 1 -> target values 1, (ignored), 1
    double = td_target(returns, discount, online, target, double=True)
    torch.testing.assert_close(double, torch.tensor([1 + 0.9 * 1, 0.5, 2 + 0.81 * 1]))
    # invalid actions are never chosen
    valid = torch.tensor([[True, False], [True, True], [True, False]])
    masked = td_target(returns, discount, online, target, valid, double=True)
    torch.testing.assert_close(masked, torch.tensor([1 + 0.9 * 2, 0.5, 2 + 0.81 * 4]))


def fill(buffer, rewards, terminated, truncated):
    """One env; obs value = time index so the sampled next_obs can be identified."""
    for t, (r, te, tr) in enumerate(zip(rewards, terminated, truncated)):
        obs, next_obs = {"obs": torch.tensor([[float(t)]])}, {"obs": torch.tensor([[t + 0.5]])}
        flags = torch.tensor([te]), torch.tensor([tr])
        buffer.add(obs, torch.tensor([0]), torch.tensor([r]), next_obs, *flags)


def test_n_step_returns_stop_at_terminal_and_bootstrap_at_truncation():
    gamma = 0.5
    buffer = ReplayBuffer(capacity=100, num_envs=1, device=torch.device("cpu"), n_step=3)
    # episode A: t0, t1 (terminated); episode B: t2, t3 (truncated); episode C: t4, t5, t6
    rewards = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    terminated = [t == 1 for t in range(7)]
    truncated = [t == 3 for t in range(7)]
    fill(buffer, rewards, terminated, truncated)
    batch = buffer.sample(512, 3, gamma, torch.Generator().manual_seed(0))
    expected = {  # start t -> (return, discount, next obs)
        0: (1 + 0.5 * 2, 0.0, 1.5),  # terminated at t1: no bootstrap
        1: (2.0, 0.0, 1.5),
        2: (3 + 0.5 * 4, 0.25, 3.5),  # truncated at t3: bootstrap γ² from its final obs
        3: (4.0, 0.5, 3.5),
        4: (5 + 0.5 * 6 + 0.25 * 7, 0.125, 6.5),  # a full 3-step return
    }
    starts = batch["obs"]["obs"][:, 0].long().tolist()
    assert set(starts) == set(expected)  # t5, t6 lack 3 successors yet
    for i, t in enumerate(starts):
        ret, disc, nxt = expected[t]
        assert batch["return"][i].item() == pytest.approx(ret)
        assert batch["discount"][i].item() == pytest.approx(disc)
        assert batch["next_obs"]["obs"][i, 0].item() == pytest.approx(nxt)


def test_buffer_with_several_envs_wraps_around():
    buffer = ReplayBuffer(capacity=12, num_envs=3, device=torch.device("cpu"), n_step=2)
    assert buffer.T == 4
    for t in range(7):  # env i at time t: obs 100 i + t, reward t + i / 10, no session ends
        obs = {"obs": torch.tensor([[100.0 * i + t] for i in range(3)])}
        next_obs = {"obs": obs["obs"] + 1}
        reward = torch.tensor([t + i / 10 for i in range(3)])
        no = torch.zeros(3, dtype=torch.bool)
        buffer.add(obs, torch.zeros(3, dtype=torch.long), reward, next_obs, no, no)
    assert len(buffer) == 12  # the oldest three steps were overwritten
    batch = buffer.sample(2000, 2, 0.5, torch.Generator().manual_seed(1))
    value = batch["obs"]["obs"][:, 0]
    env, t = (value // 100).long(), (value % 100).long()
    assert set(t.tolist()) == {3, 4, 5}  # t = 6 lacks a successor; 0..2 are gone
    assert set(env.tolist()) == {0, 1, 2}
    torch.testing.assert_close(batch["return"], (t + env / 10) + 0.5 * (t + 1 + env / 10))
    torch.testing.assert_close(batch["next_obs"]["obs"][:, 0], value + 2)  # from obs at t + 1
    assert (batch["discount"] == 0.25).all()


def test_a_buffer_too_small_for_n_step_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than n_step=3"):
        ReplayBuffer(capacity=16, num_envs=8, device=torch.device("cpu"), n_step=3)


def tiny_world_agent(batch_size=8, sim_config=None, **config):
    world = World.random(n_users=20, n_items=15, seed=0)
    net = RecQNetwork(ItemTable(15, dim=8))
    settings = dict(learning_starts=64, batch_size=32, buffer_size=2000) | config
    agent = DQN(net, DQNConfig(**settings), device="cpu")
    sim_config = sim_config or SimulatorConfig(horizon=10)
    sim = UserSimulator(world, sim_config, batch_size=batch_size, device="cpu")
    return agent, TorchVectorEnv(sim)


def test_target_network_moves_only_when_it_should():
    agent, env = tiny_world_agent(target_update="hard", target_interval=5)
    agent.train(env, 56, progress=False)  # 7 steps of 8 users: below learning_starts
    assert agent.updates == 0
    before = [p.clone() for p in agent.target.parameters()]
    for _ in range(4):
        agent.update()
    assert all(torch.equal(a, b) for a, b in zip(before, agent.target.parameters()))
    agent.update()  # the 5th update copies the online net
    assert all(torch.equal(a, b) for a, b in zip(agent.q.parameters(), agent.target.parameters()))
    polyak, env = tiny_world_agent(target_update="polyak", tau=0.1)
    polyak.train(env, 64, progress=False)
    before = [p.clone() for p in polyak.target.parameters()]
    polyak.update()
    for old, new, online in zip(before, polyak.target.parameters(), polyak.q.parameters()):
        torch.testing.assert_close(new, old + 0.1 * (online - old))


def test_two_train_calls_equal_one_and_never_stitch_sessions():
    def run(splits):
        torch.manual_seed(0)
        agent, env = tiny_world_agent(seed=2)
        history = [agent.train(env, n, log_every=80, progress=False) for n in splits]
        return agent, history

    whole, (history,) = run([480])
    halves, (first, second) = run([240, 240])
    assert history.equals(pd.concat([first, second], ignore_index=True))
    for key, stored in whole.buffer.storage.items():
        assert torch.equal(stored, halves.buffer.storage[key]), key
    assert all(torch.equal(a, b) for a, b in zip(whole.q.parameters(), halves.q.parameters()))
    # every stored step continues the step before it, or starts a new session after a done
    storage, size = halves.buffer.storage, halves.buffer.size
    for t in range(1, size):
        fresh = storage["obs/step"][t, :, 0] == 0
        step, previous_next = storage["obs/step"][t, :, 0], storage["next_obs/step"][t - 1, :, 0]
        continues = torch.isclose(step, previous_next)
        assert torch.where(storage["done"][t - 1], fresh, continues).all(), t


@pytest.mark.parametrize("between", ["another env", "the env stepped elsewhere"])
def test_a_broken_chain_starts_new_sessions_and_cuts_the_seam(between):
    agent, env = tiny_world_agent()
    agent.train(env, 80, progress=False)
    last = (agent.buffer.pos - 1) % agent.buffer.T
    assert not agent.buffer.storage["done"][last].all()
    if between == "another env":
        _, env = tiny_world_agent()
    else:
        env.step(agent.act(env.reset(seed=5)))  # e.g. a quick look at the policy
    agent.train(env, 16, progress=False)
    assert agent.buffer.storage["done"][last].all()  # cut, not terminated:
    assert not agent.buffer.storage["terminated"][last].all()  # it bootstraps
    first = agent.buffer.storage["obs/step"][(last + 1) % agent.buffer.T]
    assert (first == 0).all()  # ... and the next stored step starts a fresh session


def test_an_env_of_another_size_is_a_clear_error():
    agent, env = tiny_world_agent(batch_size=8)
    agent.train(env, 16, progress=False)
    _, wider = tiny_world_agent(batch_size=4)
    with pytest.raises(ValueError, match="holds 8 envs per step"):
        agent.train(wider, 16, progress=False)


def test_the_horizon_is_terminal_so_the_last_step_is_worth_its_reward():
    """Every step is clicked (reward 1) and sessions last 3 steps: Q at the last step must be
    1, at the first 1 + γ + γ². Bootstrapping at the horizon would add γ·Q(unseen state)."""
    sim_config = SimulatorConfig(horizon=3, click_bias=20.0, budget_init=1e6)
    schedule = EpsilonSchedule(1.0, 0.1, 2000)
    settings = dict(gamma=0.9, n_step=1, lr=3e-3, epsilon=schedule, seed=0)
    agent, env = tiny_world_agent(sim_config=sim_config, **settings)
    torch.manual_seed(0)
    agent.train(env, 6000, progress=False)
    obs = env.reset(seed=11)
    values = []
    for _ in range(3):
        action = agent.act(obs)
        values.append(agent.q(obs).gather(1, action[:, None]).mean().item())
        obs, *_ = env.step(action)
    assert values[2] == pytest.approx(1.0, abs=0.1)
    assert values[0] == pytest.approx(1 + 0.9 + 0.81, abs=0.15)


def test_actions_avoid_the_session_log_and_checkpoints_resume_exactly(tmp_path):
    agent, env = tiny_world_agent(seed=4)
    agent.train(env, 400, log_every=100, progress=False)
    _, look = tiny_world_agent()  # a separate env to look at the policy
    obs = look.reset(seed=1)
    for _ in range(3):
        obs, *_ = look.step(agent.act(obs, epsilon=0.5))
    chosen = agent.act(obs)
    assert not (obs["items"] == chosen[:, None])[obs["mask"]].any()

    agent.train(env, 200, log_every=100, progress=False)  # back to training on the same env
    agent.save(tmp_path / "dqn.pt")
    snapshot = env.sim.state_dict()
    history = agent.train(env, 320, log_every=80, progress=False)
    env.sim.load_state_dict(snapshot)
    resumed = DQN.load(tmp_path / "dqn.pt", RecQNetwork(ItemTable(15, dim=8)), env=env)
    assert (resumed.steps, resumed.updates) == (600, agent.updates - 320 // 8)
    assert resumed.config == agent.config
    again = resumed.train(env, 320, log_every=80, progress=False)
    assert history.equals(again)
    assert all(torch.equal(a, b) for a, b in zip(agent.q.parameters(), resumed.q.parameters()))
    with pytest.raises(FileNotFoundError, match="no DQN checkpoint"):
        DQN.load(tmp_path / "missing.pt", RecQNetwork(ItemTable(15, dim=8)))


def test_same_seed_same_training():
    def trained():
        torch.manual_seed(0)
        agent, env = tiny_world_agent(seed=3)
        history = agent.train(env, 400, log_every=100, progress=False)
        return history, torch.cat([p.flatten() for p in agent.q.parameters()])

    (h1, w1), (h2, w2) = trained(), trained()
    assert h1.equals(h2) and torch.equal(w1, w2)


def test_restrict_to_limits_every_action_and_rejects_bad_masks():
    agent, env = tiny_world_agent()
    allowed = torch.zeros(15, dtype=torch.bool)
    allowed[[2, 5, 7, 9, 11, 12, 13, 14]] = True
    agent.q.restrict_to(allowed)
    obs = env.reset(seed=0)
    for _ in range(6):
        action = agent.act(obs, epsilon=0.5)
        assert allowed[action].all()
        obs, *_ = env.step(action)
    agent.q.restrict_to(None)
    assert agent.q.valid_actions(env.reset(seed=0)).all()
    with pytest.raises(ValueError, match="bool tensor"):
        agent.q.restrict_to(torch.ones(14, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one item"):
        agent.q.restrict_to(torch.zeros(15, dtype=torch.bool))


@pytest.mark.parametrize("history", ["mean", "gru", "transformer"])
def test_the_q_network_reads_user_features_with_every_history_encoder(history):
    world = World.random(n_users=20, n_items=15, seed=0)
    sim = UserSimulator(world, SimulatorConfig(observe_features=True), batch_size=4, device="cpu")
    obs = sim.reset(seed=0)
    obs, *_ = sim.step(torch.arange(4))
    n_features = world.user_features.shape[1]
    net = RecQNetwork(ItemTable(15, dim=8), history=history, n_features=n_features, window=5)
    assert net(obs).shape == (4, 15)
    changed = dict(obs, features=obs["features"] + 1.0)
    assert not torch.equal(net(obs), net(changed))
    with pytest.raises(KeyError, match="observe_features=True"):
        net({k: v for k, v in obs.items() if k != "features"})
    with pytest.raises(ValueError, match="history must be one of"):
        RecQNetwork(ItemTable(15, dim=8), history="lstm")


def test_nan_loss_is_a_clear_error():
    agent, env = tiny_world_agent()
    agent.train(env, 64, progress=False)
    with torch.no_grad():
        for p in agent.q.parameters():
            p.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="DQN loss became nan"):
        agent.update()


def test_mlp_head_learns_cartpole():
    torch.manual_seed(0)
    env = TorchVectorEnv.make("CartPole-v1", num_envs=4)
    agent = DQN(
        MLPQNetwork(env.obs_dim, env.n_actions, hidden=64),
        DQNConfig(
            gamma=0.99,
            n_step=3,
            lr=1e-3,
            learning_starts=1000,
            batch_size=128,
            epsilon=EpsilonSchedule(1.0, 0.05, 10_000),
            target_update="hard",
            target_interval=250,
            seed=0,
        ),
        device="cpu",
    )
    history = agent.train(env, 30_000, log_every=2_000, progress=False)
    eval_env = TorchVectorEnv.make("CartPole-v1", num_envs=8)
    obs, total, alive = eval_env.reset(seed=123), torch.zeros(8), torch.ones(8, dtype=torch.bool)
    while alive.any():
        obs, _, reward, terminated, truncated = eval_env.step(agent.act(obs))
        total += reward * alive
        alive &= ~(terminated | truncated)
    returns = total.numpy()
    # a random policy averages about 22; the learned one must be far above it
    assert np.mean(returns) > 150, (np.mean(returns), history.tail(3).to_string())


def test_the_course_recipes_train_on_the_pool_and_repeat_with_a_seed(tmp_path, monkeypatch):
    from recrl_lib.agents import RecActorCritic, train_dqn_recommender, train_ppo_recommender

    monkeypatch.setenv("RECRL_AGENT_CACHE_DIR", str(tmp_path))
    world = World.random(n_users=20, n_items=15, seed=0)
    config = SimulatorConfig(horizon=6, observe_user=True)
    pool = torch.tensor([3, 4, 9])

    def q_network():
        return RecQNetwork(ItemTable(15, dim=8, text_vectors=torch.randn(15, 5), use_ids=False))

    def run(seed):
        return train_dqn_recommender(
            q_network,
            world,
            config,
            seed=seed,
            steps=600,
            user_pool=pool,
            progress=False,
            device="cpu",
            cache=False,
        )

    (agent, history), (again, _) = run(0), run(0)
    users = agent.buffer.storage["obs/user"][: agent.buffer.size]
    assert set(users.flatten().tolist()) <= {3, 4, 9}  # every training session: a pool user
    assert len(history) >= 10 and not history.attrs["from_cache"]
    for a, b in zip(agent.q.state_dict().values(), again.q.state_dict().values()):
        assert torch.equal(a, b)  # the seed decides the initial weights and the run
    assert not torch.equal(agent.q.mlp[0].weight, run(1)[0].q.mlp[0].weight)

    def actor_critic():
        return RecActorCritic(ItemTable(15, dim=8, text_vectors=torch.randn(15, 5)))

    ppo, ppo_history = train_ppo_recommender(
        actor_critic,
        world,
        config,
        seed=0,
        steps=64 * 64,
        user_pool=pool,
        progress=False,
        device="cpu",
        cache=False,
    )
    assert ppo.config.lr == 1e-3 and not ppo.config.anneal_lr and len(ppo_history) >= 1


def test_a_trained_recommender_is_cached_by_everything_that_decides_it(tmp_path, monkeypatch):
    from recrl_lib.agents import train_dqn_recommender

    monkeypatch.setenv("RECRL_AGENT_CACHE_DIR", str(tmp_path))
    world = World.random(n_users=20, n_items=15, seed=0)
    config = SimulatorConfig(horizon=6)

    def q_network(window=10):
        items = ItemTable(15, dim=8, text_vectors=torch.randn(15, 5), use_ids=False)
        return RecQNetwork(items, window=window)

    def run(make=q_network, **options):
        settings = dict(seed=0, steps=400, user_pool=None, progress=False, device="cpu")
        return train_dqn_recommender(make, world, config, **(settings | options))

    (tmp_path / "an-older-library").mkdir()  # entries of another version of the source
    trained, history = run()
    assert len(list(tmp_path.glob("*/dqn-*.pt"))) == 1 and not history.attrs["from_cache"]
    assert not (tmp_path / "an-older-library").exists()  # dropped when a new entry is saved

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although the agent was cached")

    monkeypatch.setattr(DQN, "train", no_training)
    loaded, loaded_history = run()  # the same key: loaded, not trained
    for a, b in zip(trained.q.state_dict().values(), loaded.q.state_dict().values()):
        assert torch.equal(a, b)
    assert loaded_history.attrs["from_cache"]
    pd.testing.assert_frame_equal(history, loaded_history)
    obs = UserSimulator(world, config, batch_size=4, device="cpu").reset(seed=1)
    assert torch.equal(trained.policy()(obs), loaded.policy()(obs))
    some_items = torch.arange(15) < 10
    for changed in [
        dict(steps=401),
        dict(seed=1),
        dict(gamma=0.5),
        dict(user_pool=torch.tensor([1, 2])),
        dict(allowed=some_items),
        dict(make=lambda: q_network(window=5)),  # same weights, another network
        dict(cache=False),
    ]:
        with pytest.raises(AssertionError, match="trained again"):
            run(**changed)  # another key (or no cache): trains
    with pytest.raises(AssertionError, match="trained again"):
        train_dqn_recommender(
            q_network,
            World.random(n_users=20, n_items=15, seed=1),  # another world
            SimulatorConfig(horizon=7),
            seed=0,
            steps=400,
            user_pool=None,
            progress=False,
            device="cpu",
        )
    (entry,) = tmp_path.glob("*/dqn-*.pt")
    entry.write_bytes(entry.read_bytes()[:100])  # a truncated file: a clear warning, then trains
    unreadable = pytest.warns(UserWarning, match="unreadable cache file")
    with unreadable, pytest.raises(AssertionError, match="trained again"):
        run()


def test_a_ppo_cached_without_a_diagnostic_hook_is_trained_again_for_one(tmp_path, monkeypatch):
    from recrl_lib.agents import PPO, RecActorCritic, train_ppo_recommender

    monkeypatch.setenv("RECRL_AGENT_CACHE_DIR", str(tmp_path))
    world = World.random(n_users=20, n_items=15, seed=0)
    config = SimulatorConfig(horizon=6)

    def actor_critic():
        return RecActorCritic(ItemTable(15, dim=8, text_vectors=torch.randn(15, 5)))

    def hook(agent, rollout):  # draws from the global generator, as a careless hook might
        return {"first action": rollout.actions[0, 0].item(), "noise": torch.rand(1).item()}

    def run(**options):
        settings = dict(seed=0, steps=64 * 64, user_pool=None, progress=False, device="cpu")
        return train_ppo_recommender(actor_critic, world, config, **(settings | options))

    _, hooked = run(on_rollout=hook)
    after_training = torch.get_rng_state()
    assert "first action" in hooked
    trainings = []
    train = PPO.train
    monkeypatch.setattr(PPO, "train", lambda *a, **k: trainings.append(1) or train(*a, **k))
    torch.rand(5)  # move the global generator on
    _, plain = run()  # a call without the hook takes the hooked agent...
    assert not trainings and "first action" in plain
    assert torch.equal(torch.get_rng_state(), after_training)  # ...and the generators after it
    run(seed=1)
    run(seed=1, on_rollout=hook)  # cached without the hook: its history lacks the column
    assert len(trainings) == 2
    run(seed=1, on_rollout=functools.partial(hook))  # no stable name: trained, never cached
    run(seed=1, on_rollout=functools.partial(hook))
    assert len(trainings) == 4


def test_a_cache_that_cannot_be_written_only_costs_time(tmp_path, monkeypatch):
    from recrl_lib.agents import cache as agent_cache

    def full_disk(*args, **kwargs):
        raise RuntimeError("unexpected EOF: the disk is full")  # what torch.save's writer raises

    monkeypatch.setattr(agent_cache.torch, "save", full_disk)
    path = tmp_path / "v" / "dqn-x.pt"
    with pytest.warns(UserWarning, match="could not write the cache file"):
        agent_cache.save(path, {"w": torch.zeros(2)}, pd.DataFrame({"step": [1]}))
    assert list((tmp_path / "v").iterdir()) == []  # no entry, no partial file left behind
