"""PPO pieces against reference loops and hand computations, the update's direction, its
bookkeeping (continuity, whole sessions, checkpoints, seeds) and the MLP actor-critic on
CartPole."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from recrl_lib.agents.ppo import (
    PPO,
    MLPActorCritic,
    PPOConfig,
    RecActorCritic,
    Rollout,
    gae,
    log_probs_and_entropy,
    ppo_loss,
)
from recrl_lib.encoders import ItemTable
from recrl_lib.envs import SimulatorConfig, TorchVectorEnv, UserSimulator, World


def reference_gae(rewards, values, next_values, terminated, done, gamma, lam):
    """A_t = Σ_k (γλ)^(k−t) δ_k, summed from t until a session ends or the rollout does."""
    T, E = rewards.shape
    advantages = np.zeros((T, E))
    for e in range(E):
        for t in range(T):
            total = 0.0
            for k in range(t, T):
                bootstrap = 0.0 if terminated[k, e] else gamma * next_values[k, e]
                delta = rewards[k, e] + bootstrap - values[k, e]
                total += (gamma * lam) ** (k - t) * delta
                if done[k, e]:
                    break
            advantages[t, e] = total
    return advantages


@pytest.mark.parametrize("lam", [0.0, 0.7, 1.0])
def test_gae_equals_a_reference_loop_with_terminated_and_cut_sessions(lam):
    g = torch.Generator().manual_seed(0)
    T, E, gamma = 12, 5, 0.9
    rewards, values, next_values = (
        torch.randn(T, E, generator=g, dtype=torch.float64) for _ in "123"
    )
    terminated = torch.rand(T, E, generator=g) < 0.2
    cut = (torch.rand(T, E, generator=g) < 0.15) & ~terminated
    done = terminated | cut
    assert terminated.any() and cut.any()
    advantages, returns = gae(rewards, values, next_values, terminated, done, gamma, lam)
    expected = reference_gae(
        *(x.numpy() for x in (rewards, values, next_values)),
        terminated.numpy(),
        done.numpy(),
        gamma,
        lam,
    )
    np.testing.assert_allclose(advantages.numpy(), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(returns, advantages + values)


def test_gae_at_lambda_one_without_a_critic_is_the_discounted_return_to_go():
    rewards = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]])
    terminated = torch.tensor([[False], [True], [False], [False], [False]])
    zeros = torch.zeros_like(rewards)
    advantages, _ = gae(rewards, zeros, zeros, terminated, terminated, gamma=0.5, lam=1.0)
    # session 1: 1 + 0.5·2, 2; session 2 (running at the rollout's end): 3 + .5·4 + .25·5, ...
    expected = [[2.0], [2.0], [3 + 2 + 1.25], [4 + 2.5], [5.0]]
    torch.testing.assert_close(advantages, torch.tensor(expected))


def test_the_clipped_loss_value_loss_and_entropy_equal_a_hand_computation():
    old = torch.log(torch.tensor([0.5, 0.5, 0.2]))
    new = torch.log(torch.tensor([0.75, 0.25, 0.2]))  # ratios 1.5, 0.5, 1.0
    adv = torch.tensor([2.0, -1.0, 3.0])
    new_v, old_v, ret = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.5, 0.0, 2.5]), torch.zeros(3)
    entropy = torch.tensor([0.3, 0.6, 0.9])
    loss, parts = ppo_loss(
        new, old, adv, new_v, old_v, ret, entropy, clip_coef=0.2, vf_coef=0.5, ent_coef=0.1
    )
    # min(r A, clip(r) A): min(3, 2.4) = 2.4; min(-0.5, -0.8) = -0.8; min(3, 3) = 3
    policy = -(2.4 - 0.8 + 3.0) / 3
    value = 0.5 * (1.0 + 0.0 + 4.0) / 3
    assert parts["policy"].item() == pytest.approx(policy)
    assert parts["value"].item() == pytest.approx(value)
    assert parts["entropy"].item() == pytest.approx(0.6)
    assert loss.item() == pytest.approx(policy + 0.5 * value - 0.1 * 0.6)
    assert parts["clip_fraction"].item() == pytest.approx(2 / 3)
    kl = np.mean([(r - 1) - math.log(r) for r in (1.5, 0.5, 1.0)])
    assert parts["approx_kl"].item() == pytest.approx(kl)
    # value clipping at 0.2: V_clip = 0.7, 0.0, 2.3 -> max((V−R)², (V_clip−R)²) = 1, 0, 5.29
    _, clipped = ppo_loss(new, old, adv, new_v, old_v, ret, entropy, value_clip=0.2)
    assert clipped["value"].item() == pytest.approx(0.5 * (1.0 + 0.0 + 5.29) / 3)
    # no clipping (REINFORCE's surrogate) and weights that leave the last step out
    _, plain = ppo_loss(
        new,
        old,
        adv,
        new_v,
        old_v,
        ret,
        entropy,
        clip_coef=None,
        weights=torch.tensor([1.0, 1.0, 0.0]),
    )
    assert plain["policy"].item() == pytest.approx(-(3.0 - 0.5) / 2)


def test_masked_softmax_gives_invalid_items_zero_probability_and_excludes_them_from_entropy():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    valid = torch.tensor([[True, False, True, False]])
    log_probs, entropy = log_probs_and_entropy(logits, valid)
    probs = log_probs.exp()
    assert probs[0, 1] == 0 and probs[0, 3] == 0
    p = torch.softmax(torch.tensor([1.0, 3.0]), 0)
    torch.testing.assert_close(probs[0, [0, 2]], p)
    torch.testing.assert_close(entropy, -(p * p.log()).sum()[None])


def one_step_rollout(net, obs, actions, rewards) -> Rollout:
    """A hand-made rollout of one step per env (T = 1) whose sessions all terminate."""
    with torch.no_grad():
        log_probs, entropy = log_probs_and_entropy(net.logits(obs), net.valid_actions(obs))
    E = len(actions)
    zeros, true = torch.zeros(1, E), torch.ones(1, E, dtype=torch.bool)
    return Rollout(
        obs={k: v[None] for k, v in obs.items()},
        actions=actions[None],
        log_probs=log_probs.gather(1, actions[:, None])[:, 0][None],
        values=zeros,
        rewards=rewards[None],
        terminated=true,
        done=true,
        next_values=zeros,
        live=true,
        entropy=entropy[None],
    )


def probabilities(net, obs, actions):
    with torch.no_grad():
        log_probs, _ = log_probs_and_entropy(net.logits(obs), net.valid_actions(obs))
    return log_probs.exp().gather(1, actions[:, None])[:, 0]


def test_one_update_raises_a_good_action_and_lowers_a_bad_one():
    torch.manual_seed(0)
    net = MLPActorCritic(obs_dim=3, n_actions=4)
    config = PPOConfig(gamma=0.0, update_epochs=1, n_minibatches=1, lr=1e-2, target_kl=None)
    agent = PPO(net, config, device="cpu")
    obs = {"obs": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])}
    actions, rewards = torch.tensor([0, 1]), torch.tensor([1.0, -1.0])
    before = probabilities(net, obs, actions)
    agent.update(one_step_rollout(net, obs, actions, rewards))
    after = probabilities(net, obs, actions)
    assert after[0] > before[0] and after[1] < before[1], (before, after)


@pytest.mark.parametrize(("target_kl", "epochs"), [(1e-6, 2), (None, 6), (10.0, 6)])
def test_the_kl_early_stop_fires_when_the_policy_moves_past_the_target(target_kl, epochs):
    """With one minibatch, epoch 1 measures the KL before its own step (0); epoch 2 sees the
    moved policy and stops there if the KL passed the target."""
    torch.manual_seed(0)
    net = MLPActorCritic(obs_dim=3, n_actions=4)
    config = PPOConfig(gamma=0.0, update_epochs=6, n_minibatches=1, lr=0.05, target_kl=target_kl)
    agent = PPO(net, config, device="cpu")
    obs = {"obs": torch.eye(3)}
    stats = agent.update(
        one_step_rollout(net, obs, torch.tensor([0, 1, 2]), torch.tensor([1.0, -1, 1]))
    )
    assert stats["epochs"] == epochs
    if target_kl == 1e-6:
        assert stats["approx_kl"] > target_kl


def tiny_world_agent(batch_size=8, sim_config=None, **config):
    world = World.random(n_users=20, n_items=15, seed=0)
    net = RecActorCritic(ItemTable(15, dim=8), hidden=32)
    settings = dict(num_steps=8, n_minibatches=2, lr=1e-3) | config
    agent = PPO(net, PPOConfig(**settings), device="cpu")
    sim_config = sim_config or SimulatorConfig(horizon=10)
    sim = UserSimulator(world, sim_config, batch_size=batch_size, device="cpu")
    return agent, TorchVectorEnv(sim)


def test_invalid_items_get_zero_probability_and_are_never_drawn():
    agent, env = tiny_world_agent()
    allowed = torch.ones(15, dtype=torch.bool)
    allowed[[0, 3, 4]] = False
    agent.net.restrict_to(allowed)
    obs = env.reset(seed=0)
    for _ in range(6):
        valid = agent.net.valid_actions(obs)
        log_probs, _ = log_probs_and_entropy(agent.net.logits(obs), valid)
        assert (log_probs.exp()[~valid] == 0).all()
        assert (~valid[:, [0, 3, 4]]).all()
        action = agent.act(obs)
        assert valid.gather(1, action[:, None]).all()
        assert not (obs["items"] == action[:, None])[obs["mask"]].any()  # never a repeat
        obs, *_ = env.step(action)
    with pytest.raises(ValueError, match="at least one item"):
        agent.net.restrict_to(torch.zeros(15, dtype=torch.bool))


def test_the_critic_never_moves_the_policy():
    """Separate trunks: the value loss alone gives the actor's parameters no gradient."""
    agent, env = tiny_world_agent()
    obs = env.reset(seed=0)
    obs, *_ = env.step(agent.act(obs))
    agent.net.zero_grad()
    agent.net.value(obs).pow(2).sum().backward()
    actor = [p.grad for p in [*agent.net.actor.parameters(), *agent.net.items.parameters()]]
    assert all(g is None or (g == 0).all() for g in actor)
    assert any(p.grad is not None and (p.grad != 0).any() for p in agent.net.critic.parameters())


def test_two_train_calls_equal_one():
    def run(splits):
        torch.manual_seed(0)
        agent, env = tiny_world_agent(seed=2)
        history = [agent.train(env, n, progress=False) for n in splits]
        return agent, pd.concat(history, ignore_index=True)

    whole, history = run([640])
    halves, joined = run([320, 320])
    assert history.equals(joined)
    assert all(torch.equal(a, b) for a, b in zip(whole.net.parameters(), halves.net.parameters()))


def test_same_seed_same_training_and_checkpoints_resume_exactly(tmp_path):
    def trained():
        torch.manual_seed(0)
        agent, env = tiny_world_agent(seed=3, total_steps=1280)
        history = agent.train(env, 640, progress=False)
        return agent, env, history

    (a1, env, h1), (a2, _, h2) = trained(), trained()
    assert h1.equals(h2)
    assert all(torch.equal(a, b) for a, b in zip(a1.net.parameters(), a2.net.parameters()))

    a1.save(tmp_path / "ppo.pt")
    snapshot = env.sim.state_dict()
    rest = a1.train(env, 640, progress=False)
    env.sim.load_state_dict(snapshot)
    network = RecActorCritic(ItemTable(15, dim=8), hidden=32)
    resumed = PPO.load(tmp_path / "ppo.pt", network, env=env, device="cpu")
    assert (resumed.steps, resumed.config) == (640, a1.config)
    again = resumed.train(env, 640, progress=False)
    assert rest.equals(again)
    assert all(torch.equal(a, b) for a, b in zip(a1.net.parameters(), resumed.net.parameters()))
    # annealed over total_steps on the steps collected before each rollout (64 per rollout)
    assert h1["lr"].iloc[0] == pytest.approx(1e-3)
    assert rest["lr"].iloc[-1] == pytest.approx(1e-3 * 64 / 1280)
    with pytest.raises(FileNotFoundError, match="no PPO checkpoint"):
        PPO.load(tmp_path / "missing.pt", network)


def test_whole_sessions_count_each_session_once_and_need_a_long_enough_rollout():
    sim_config = SimulatorConfig(horizon=6, budget_init=1e6)  # every session lasts 6 steps
    agent, env = tiny_world_agent(
        sim_config=sim_config, **PPOConfig.reinforce(True, num_steps=9).__dict__
    )
    rollout = agent.collect(env)
    assert (rollout.live[:6]).all() and not rollout.live[6:].any()
    assert rollout.done[5].all() and rollout.terminated[5].all()
    assert len(agent.finished) == env.num_envs
    torch.testing.assert_close(torch.tensor(agent.finished), rollout.rewards[:6].sum(0))
    short, env = tiny_world_agent(sim_config=sim_config, whole_sessions=True, num_steps=4)
    with pytest.raises(RuntimeError, match="raise it to the simulator's horizon"):
        short.collect(env)


def test_reinforce_is_ppo_with_its_parts_switched_off():
    config = PPOConfig.reinforce(baseline=False, lr=0.01)
    assert (config.clip_coef, config.target_kl, config.gae_lambda) == (None, None, 1.0)
    assert (config.max_grad_norm, config.ent_coef, config.normalize_advantages) == (
        None,
        0.0,
        False,
    )
    assert (config.update_epochs, config.n_minibatches, config.use_critic) == (1, 1, False)
    agent, env = tiny_world_agent(**PPOConfig.reinforce(False, num_steps=10).__dict__)
    rollout = agent.collect(env)
    assert (rollout.values == 0).all() and (rollout.next_values == 0).all()


def test_nan_loss_is_a_clear_error():
    agent, env = tiny_world_agent()
    rollout = agent.collect(env)
    with torch.no_grad():
        for p in agent.net.parameters():
            p.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="PPO loss became nan"):
        agent.update(rollout)


def test_mlp_actor_critic_learns_cartpole():
    torch.manual_seed(0)
    env = TorchVectorEnv.make("CartPole-v1", num_envs=8)
    config = PPOConfig(gamma=0.99, num_steps=128, lr=2.5e-3, total_steps=60_000, seed=0)
    agent = PPO(MLPActorCritic(env.obs_dim, env.n_actions), config, device="cpu")
    history = agent.train(env, 60_000, progress=False)
    eval_env = TorchVectorEnv.make("CartPole-v1", num_envs=8)
    obs, total, alive = eval_env.reset(seed=123), torch.zeros(8), torch.ones(8, dtype=torch.bool)
    while alive.any():
        obs, _, reward, terminated, truncated = eval_env.step(agent.act(obs, greedy=True))
        total += reward * alive
        alive &= ~(terminated | truncated)
    # a random policy averages about 22; the learned one must be far above it
    assert total.mean().item() > 150, (total.tolist(), history.tail(3).to_string())


class CountingEnv(gym.Env):
    """obs = [steps taken]; never terminates: only a TimeLimit ends it (a cut, not an end)."""

    observation_space = gym.spaces.Box(0.0, 100.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([float(self.t)], np.float32), 1.0, False, False, {}


def test_a_cut_session_bootstraps_from_its_own_last_observation_not_the_next_users_first():
    env = TorchVectorEnv.make(lambda: gym.wrappers.TimeLimit(CountingEnv(), 3), num_envs=2)
    torch.manual_seed(0)
    agent = PPO(MLPActorCritic(1, 2), PPOConfig(num_steps=7), device="cpu")
    rollout = agent.collect(env)
    cut = rollout.done & ~rollout.terminated
    assert cut[2].all() and cut[5].all() and not rollout.terminated.any()
    with torch.no_grad():
        at = {k: agent.net.value({"obs": torch.full((2, 1), k)}) for k in (1.0, 2.0, 3.0)}
    torch.testing.assert_close(rollout.next_values[2], at[3.0])  # not V(obs = 0)
    torch.testing.assert_close(rollout.next_values[0], at[1.0])
    torch.testing.assert_close(rollout.next_values[1], at[2.0])


def test_a_sampled_policy_draws_valid_items_from_its_own_generator():
    agent, env = tiny_world_agent()
    before = agent.generator.get_state()
    obs = env.reset(seed=0)
    draws = [agent.policy(greedy=False, seed=3)(obs) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])  # same seed, same draws
    assert agent.net.valid_actions(obs).gather(1, draws[0][:, None]).all()
    assert torch.equal(agent.generator.get_state(), before)  # training's stream untouched
