"""DQN pieces against hand computations, and the MLP head on a small Gymnasium task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recrl_lib.agents.dqn import DQN, DQNConfig, MLPQNetwork, RecQNetwork, ReplayBuffer, td_target
from recrl_lib.agents.tabular import EpsilonSchedule
from recrl_lib.agents.vec import GymVecEnv, SimulatorVecEnv
from recrl_lib.encoders import ItemTable
from recrl_lib.envs import SimulatorConfig, UserSimulator, World


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
        buffer.add({"obs": torch.tensor([[float(t)]])}, torch.tensor([0]), torch.tensor([r]),
                   {"obs": torch.tensor([[t + 0.5]])}, torch.tensor([te]), torch.tensor([tr]))  # fmt: skip


def test_n_step_returns_stop_at_terminal_and_bootstrap_at_truncation():
    gamma = 0.5
    buffer = ReplayBuffer(capacity=100, num_envs=1, device=torch.device("cpu"))
    # episode A: t0, t1 (terminated); episode B: t2, t3 (truncated); episode C: t4, t5, t6
    fill(buffer, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
         [False, True, False, False, False, False, False],
         [False, False, False, True, False, False, False])  # fmt: skip
    batch = buffer.sample(512, 3, gamma, torch.Generator().manual_seed(0))
    expected = {  # start t -> (return, discount, next obs)
        0: (1 + 0.5 * 2, 0.0, 1.5),  # terminated at t1: no bootstrap
        1: (2.0, 0.0, 1.5),
        2: (3 + 0.5 * 4, 0.25, 3.5),  # truncated at t3: bootstrap from its final obs
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


def tiny_world_agent(**config):
    world = World.random(n_users=20, n_items=15, seed=0)
    net = RecQNetwork(ItemTable(15, dim=8))
    agent = DQN(net, DQNConfig(learning_starts=64, batch_size=32, buffer_size=2000, **config), device="cpu")  # fmt: skip
    env = SimulatorVecEnv(UserSimulator(world, SimulatorConfig(horizon=10), batch_size=8, device="cpu"))  # fmt: skip
    return agent, env


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


def test_actions_avoid_the_observed_history_and_checkpoints_round_trip(tmp_path):
    agent, env = tiny_world_agent()
    history = agent.train(env, 400, log_every=100, progress=False)
    assert {"step", "return", "loss", "epsilon"} <= set(history.columns) and agent.updates > 0
    obs = env.reset(seed=1)
    for _ in range(3):
        obs, *_ = env.step(agent.act(obs))
    chosen = agent.act(obs)
    assert not (obs["items"] == chosen[:, None])[obs["mask"]].any()
    agent.save(tmp_path / "dqn.pt")
    restored = DQN.load(tmp_path / "dqn.pt", RecQNetwork(ItemTable(15, dim=8)), device="cpu")
    assert (restored.steps, restored.updates) == (agent.steps, agent.updates)
    assert restored.config == agent.config
    torch.testing.assert_close(restored.q(obs), agent.q(obs))
    assert restored.optimizer.state_dict()["state"].keys() == agent.optimizer.state_dict()["state"].keys()  # fmt: skip
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


def test_random_policy_draws_only_allowed_unshown_items():
    from recrl_lib.agents import random_policy

    sim = UserSimulator(World.random(n_users=10, n_items=15, seed=0), batch_size=64, device="cpu")
    allowed = torch.arange(15) % 3 == 0  # 5 items
    obs = sim.reset(seed=0)
    seen = torch.zeros(64, 15, dtype=torch.bool)
    for _ in range(5):
        action = random_policy(sim, obs, allowed=allowed)
        assert allowed[action].all() and not seen[torch.arange(64), action].any()
        seen[torch.arange(64), action] = True
        obs, *_ = sim.step(action)
    assert (seen.sum(1) == 5).all()


def test_nan_loss_is_a_clear_error():
    agent, env = tiny_world_agent()
    agent.train(env, 64, progress=False)
    with torch.no_grad():
        for p in agent.q.parameters():
            p.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="DQN loss became nan"):
        agent.update()


def test_gym_vec_env_rejects_continuous_actions():
    with pytest.raises(TypeError, match="Discrete action space"):
        GymVecEnv("Pendulum-v1", num_envs=2)


def test_mlp_head_learns_cartpole():
    torch.manual_seed(0)
    env = GymVecEnv("CartPole-v1", num_envs=4)
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
        ),  # fmt: skip
        device="cpu",
    )
    history = agent.train(env, 30_000, log_every=2_000, progress=False)
    returns = []
    eval_env = GymVecEnv("CartPole-v1", num_envs=8)
    obs, total, alive = eval_env.reset(seed=123), torch.zeros(8), torch.ones(8, dtype=torch.bool)
    while alive.any():
        obs, _, reward, terminated, truncated = eval_env.step(agent.act(obs))
        total += reward * alive
        alive &= ~(terminated | truncated)
    returns = total.numpy()
    # a random policy averages about 22; the learned one must be far above it
    assert np.mean(returns) > 150, (np.mean(returns), history.tail(3).to_string())
