"""REINFORCE from logs: the corrections by hand, the paper's two small worlds, the behaviour
head, and the states rebuilt from a log."""

from __future__ import annotations

import math

import pytest
import torch

from recrl_lib.agents import epsilon_greedy, log_sessions, most_popular, softmax_policy
from recrl_lib.agents.reinforce_offpolicy import (
    LogPolicyNetwork,
    LogREINFORCE,
    LogREINFORCEConfig,
    boltzmann_top_k,
    correction_weights,
    observations_from_log,
    reinforce_loss,
    topk_multiplier,
    train_bandit,
)
from recrl_lib.encoders import ItemTable
from recrl_lib.envs import SimulatorConfig, UserSimulator
from tests.conftest import N_ITEMS


def test_the_top_k_multiplier_at_its_ends_and_by_hand():
    pi = torch.tensor([0.0, 0.25, 1.0])
    assert topk_multiplier(pi, 4).tolist() == [4.0, 4 * 0.75**3, 0.0]
    assert topk_multiplier(pi, 1).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="positive int"):
        topk_multiplier(pi, 0)


def test_capping_bounds_every_weight():
    pi, beta = torch.rand(100), torch.rand(100) * 0.01 + 1e-4
    weights = correction_weights(pi, beta, cap=math.e**3)
    assert weights.max() <= math.e**3 and weights.max() == pytest.approx(math.e**3)
    with pytest.raises(ValueError, match="probability 0"):
        correction_weights(pi, torch.zeros(100))


def test_the_corrected_gradient_equals_a_hand_computation():
    """Softmax logits θ over 3 items; ∂ log π(a) / ∂θ = e_a − π. For the batch {a=0, G=2,
    β=0.5}, {a=2, G=1, β=0.25}: ∇L = −(1/2) Σ_i w_i G_i (e_{a_i} − π), w_i = π(a_i)/β_i."""
    theta = torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64, requires_grad=True)
    actions, returns = torch.tensor([0, 2]), torch.tensor([2.0, 1.0], dtype=torch.float64)
    beta = torch.tensor([0.5, 0.25], dtype=torch.float64)
    log_pi = torch.log_softmax(theta, 0)[actions]
    reinforce_loss(log_pi, returns, beta).backward()
    pi = torch.softmax(theta.detach(), 0)
    expected = torch.zeros(3, dtype=torch.float64)
    for a, g, b in zip(actions.tolist(), returns.tolist(), beta.tolist()):
        expected -= 0.5 * (pi[a] / b) * g * (torch.eye(3, dtype=torch.float64)[a] - pi)
    assert torch.allclose(theta.grad, expected)
    theta.grad = None  # and with the top-K multiplier: one more factor K (1 − π)^(K−1)
    reinforce_loss(torch.log_softmax(theta, 0)[actions], returns, beta, top_k=3).backward()
    expected_k = torch.zeros(3, dtype=torch.float64)
    for a, g, b in zip(actions.tolist(), returns.tolist(), beta.tolist()):
        factor = (pi[a] / b) * 3 * (1 - pi[a]) ** 2
        expected_k -= 0.5 * factor * g * (torch.eye(3, dtype=torch.float64)[a] - pi)
    assert torch.allclose(theta.grad, expected_k)


def test_with_beta_equal_to_pi_the_corrected_and_plain_losses_agree():
    logits = torch.randn(5, 7, requires_grad=True)
    log_pi = torch.log_softmax(logits, 1)[torch.arange(5), torch.tensor([0, 3, 6, 2, 2])]
    returns = torch.rand(5)
    corrected = reinforce_loss(log_pi, returns, log_pi.exp().detach())
    plain = reinforce_loss(log_pi, returns, torch.full((5,), 0.3), off_policy=False)
    assert torch.allclose(corrected, plain)


def test_small_world_one_the_correction_finds_the_best_item():
    """Chen et al.'s first world: r(a_i) = i; β favours the poor items. Plain REINFORCE on
    β's data settles where E_β[r ∇log π] = 0: π ∝ β·r. Corrected, it finds item 10."""
    rewards = torch.arange(1, 11, dtype=torch.float64)
    behaviour = torch.softmax(-0.4 * rewards, 0)
    plain = train_bandit(rewards, behaviour, off_policy=False, steps=400, lr=0.1)[-1]
    corrected = train_bandit(rewards, behaviour, steps=400, lr=0.1)[-1]
    assert torch.allclose(plain, behaviour * rewards / (behaviour * rewards).sum(), atol=0.02)
    assert corrected.argmax() == 9 and corrected[9] > 0.9


def test_small_world_two_the_top_k_correction_keeps_the_runner_up():
    """Rewards [10, 9, 1, …, 1], uniform β, K = 2. The standard correction puts nearly all
    mass on item 1; the top-K one settles where λ_K(π_a) r_a is equal for the two survivors:
    10 (1 − π_1) = 9 (1 − π_2), π_1 + π_2 = 1, so π = (10/19, 9/19)."""
    rewards = torch.tensor([10.0, 9.0] + [1.0] * 8, dtype=torch.float64)
    uniform = torch.full((10,), 0.1, dtype=torch.float64)
    standard = train_bandit(rewards, uniform, steps=600, lr=0.1)[-1]
    top_k = train_bandit(rewards, uniform, top_k=2, steps=600, lr=0.1)[-1]
    assert standard[0] > 0.95
    assert abs(top_k[0] - 10 / 19) < 0.05 and abs(top_k[1] - 9 / 19) < 0.05


def test_observations_rebuilt_from_a_log_are_what_the_simulator_showed(world, stats):
    config = SimulatorConfig(horizon=10, history_len=4)
    sim = UserSimulator(world, config, batch_size=8, device="cpu")
    behaviour = epsilon_greedy(most_popular(stats), 0.5, seed=1)
    shown = []  # the observations of a manual rollout with the same seeds
    obs = sim.reset(seed=3)
    replay = epsilon_greedy(most_popular(stats), 0.5, seed=1)
    for _ in range(6):
        shown.append(obs)
        obs, *_ = sim.step(replay.sample(obs)[0])
    log = log_sessions(sim, behaviour, horizon=6, seed=3)
    for t in range(6):
        rows = torch.arange(8)
        rebuilt = observations_from_log(log, rows, torch.full((8,), t), config)
        for key in shown[t]:
            assert torch.allclose(rebuilt[key].float(), shown[t][key].float()), (t, key)
    with pytest.raises(ValueError, match="without user features or ids"):
        observations_from_log(log, rows, rows * 0, SimulatorConfig(observe_user=True))


def test_the_behaviour_head_learns_the_logged_propensities(world, stats):
    """On a log written by a softmax over popularity, the head's β̂ of the logged items comes
    close to the logged β (the returns are zeroed: only the head learns)."""
    torch.manual_seed(0)
    config = SimulatorConfig(horizon=6)
    sim = UserSimulator(world, config, batch_size=256, device="cpu")
    log = log_sessions(sim, softmax_policy(most_popular(stats), 20.0, seed=2), seed=1)
    network = LogPolicyNetwork(ItemTable(N_ITEMS, dim=8, text_vectors=torch.randn(N_ITEMS, 6)))
    settings = LogREINFORCEConfig(behaviour_lr=0.1, epochs=8, batch_size=512, propensity="logged")
    agent = LogREINFORCE(network, settings)
    log_for_head = dict(log, rewards=torch.zeros_like(log["rewards"]))  # G = 0: no policy loss
    agent.fit(log_for_head, config, progress=False)
    on_log = agent.probabilities_on_log(log, config)
    error = (on_log["beta_hat"] - on_log["beta"]).abs().mean()
    assert error < 0.1 * on_log["beta"].mean()


def test_boltzmann_top_k_draws_distinct_valid_items():
    logits = torch.randn(50, 12)
    valid = torch.rand(50, 12) < 0.7
    valid[:, :4] = True
    slates = boltzmann_top_k(logits, valid, 4, torch.Generator().manual_seed(0))
    assert slates.shape == (50, 4)
    assert valid.gather(1, slates).all()
    assert (slates.sort(1).values.diff(1) > 0).all()
    with pytest.raises(ValueError, match="fewer than k"):
        boltzmann_top_k(logits, torch.zeros(50, 12, dtype=torch.bool), 2, torch.Generator())


def test_a_bad_propensity_source_is_refused():
    with pytest.raises(ValueError, match="propensity"):
        LogREINFORCEConfig(propensity="true")
    with pytest.raises(ValueError, match="positive int"):
        LogREINFORCEConfig(top_k=0)


def test_softmax_logger_propensities_reach_the_log(world, stats):
    sim = UserSimulator(world, SimulatorConfig(horizon=5), batch_size=32, device="cpu")
    log = log_sessions(sim, softmax_policy(most_popular(stats), 30.0, seed=1), seed=0)
    assert ((log["behaviour_p"] > 0) & (log["behaviour_p"] <= 1)).all()
    assert (log["ratings"][log["rewards"] == 0] == 0).all()
    assert (log["ratings"][log["rewards"] == 1] >= 1).all()
