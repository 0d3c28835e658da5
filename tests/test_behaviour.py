"""Stochastic policies, logged sessions with propensities, and offline observations."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from recrl_lib.agents import (
    Policy,
    epsilon_greedy,
    log_sessions,
    mixture,
    most_popular,
    softmax_policy,
)
from recrl_lib.datasets import recent_history
from recrl_lib.envs import SimulatorConfig, UserSimulator, observation_from_history
from tests.conftest import N_ITEMS
from tests.test_policies import perturb_hidden_state, played_sim, ppo_policy


def stochastic(stats) -> dict[str, callable]:
    return {
        "softmax of PPO": lambda: softmax_policy(ppo_policy(greedy=True), 1.0, seed=1),
        "ε-greedy most popular": lambda: epsilon_greedy(most_popular(stats), 0.3, seed=1),
        "mixture": lambda: mixture(
            softmax_policy(most_popular(stats), 20.0),
            softmax_policy(Policy("uniform", lambda obs: torch.zeros(16, N_ITEMS), N_ITEMS)),
            0.5,
        ),
    }


def test_probabilities_sum_to_one_over_valid_items_and_draws_report_them(world, stats):
    sim, obs = played_sim(world)
    valid = ~torch.zeros(16, N_ITEMS, dtype=torch.bool).scatter(1, obs["items"][:, -4:], True)
    for name, make in stochastic(stats).items():
        policy = make()
        probs = policy.probs(obs)
        assert torch.allclose(probs.sum(1), torch.ones(16)), name
        assert (probs[~valid] == 0).all(), name
        actions, propensities = policy.sample(obs)
        assert valid.gather(1, actions[:, None]).all(), name
        assert torch.equal(propensities, probs.gather(1, actions[:, None])[:, 0]), name
        assert torch.equal(make()(obs), actions), f"{name}: the same seed draws the same"


def test_epsilon_greedy_and_softmax_follow_their_formulas(world, stats):
    _, obs = played_sim(world)
    greedy = most_popular(stats)
    probs = epsilon_greedy(greedy, 0.3).probs(obs)
    n_valid = greedy.valid(obs).sum(1)
    best = greedy(obs)
    assert torch.allclose(probs.gather(1, best[:, None])[:, 0], 0.7 + 0.3 / n_valid)
    scores = greedy.masked_scores(obs)
    assert torch.allclose(softmax_policy(greedy, 5.0).probs(obs), torch.softmax(scores / 5.0, 1))
    with pytest.raises(ValueError, match="temperature"):
        softmax_policy(greedy, 0.0)
    with pytest.raises(ValueError, match="epsilon"):
        epsilon_greedy(greedy, 1.5)


def test_no_stochastic_policy_reads_the_hidden_state(world, stats):
    sim, obs = played_sim(world)
    before = {name: make().probs(obs) for name, make in stochastic(stats).items()}
    perturb_hidden_state(sim)
    for name, make in stochastic(stats).items():
        policy = make()
        assert not policy.oracle and torch.equal(policy.probs(sim.observe()), before[name]), name


def test_a_log_records_what_was_drawn_and_its_probabilities(world, stats):
    sim = UserSimulator(world, SimulatorConfig(horizon=12), batch_size=64, device="cpu")
    behaviour = epsilon_greedy(most_popular(stats), 0.5, seed=2)
    target = softmax_policy(most_popular(stats), 10.0)
    log = log_sessions(sim, behaviour, target=target, horizon=8, seed=4)
    alive, rewards = log["alive"], log["rewards"]
    assert alive.shape == (64, 8) and alive[:, 0].all()
    assert (alive[:, 1:] <= alive[:, :-1]).all(), "a session that ended stays ended"
    assert (rewards[~alive] == 0).all() and (log["behaviour_p"][~alive] == 1).all()
    # replay the log: every recorded propensity is the probability of the drawn item
    obs = sim.reset(seed=4)
    for t in range(8):
        live = alive[:, t]
        probs = behaviour.probs(obs).gather(1, log["actions"][:, t : t + 1])[:, 0]
        assert torch.allclose(log["behaviour_p"][live, t], probs[live])
        target_probs = target.probs(obs).gather(1, log["actions"][:, t : t + 1])[:, 0]
        assert torch.allclose(log["target_p"][live, t], target_probs[live])
        obs, reward, *_ = sim.step(log["actions"][:, t])
        assert torch.equal(log["rewards"][live, t], reward[live])
    again = log_sessions(sim, epsilon_greedy(most_popular(stats), 0.5, seed=2), horizon=8, seed=4)
    assert torch.equal(again["actions"], log["actions"]), "same seeds, same log"
    with pytest.raises(ValueError, match="horizon"):
        log_sessions(sim, behaviour, horizon=13)


def test_recent_history_keeps_the_last_ratings_in_time():
    ratings = pd.DataFrame(
        {
            "user": [0, 0, 0, 1, 0],
            "item": [5, 6, 7, 8, 9],
            "rating": [1, 2, 3, 4, 5],
            "timestamp": [10, 30, 20, 5, 40],
        }
    )
    items, values, mask = recent_history(ratings, n_users=3, length=3)
    assert items[0].tolist() == [7, 6, 9] and values[0].tolist() == [3, 2, 5]
    assert mask[1].tolist() == [False, False, True] and items[1, 2] == 8
    assert not mask[2].any()


def test_an_offline_observation_looks_like_the_simulators(world):
    config = SimulatorConfig(horizon=20, history_len=6)
    sim_obs = UserSimulator(world, config, batch_size=2, device="cpu").reset(seed=0)
    items = torch.tensor([[3, 4, 5], [0, 0, 7]])
    ratings = torch.tensor([[5.0, 3.0, 4.0], [0.0, 0.0, 2.0]])
    mask = torch.tensor([[True, True, True], [False, False, True]])
    obs = observation_from_history(items, ratings, mask, config)
    assert obs.keys() == sim_obs.keys()
    for key in obs:
        assert obs[key].shape == sim_obs[key].shape and obs[key].dtype == sim_obs[key].dtype, key
    assert obs["items"][0].tolist() == [0, 0, 0, 3, 4, 5]
    assert obs["ratings"][1].tolist() == [0, 0, 0, 0, 0, pytest.approx(0.4)]
    assert obs["step"][:, 0].tolist() == [pytest.approx(3 / 20), pytest.approx(1 / 20)]
    assert torch.allclose(obs["session"][0], torch.tensor([3.0, 0.0, 12 / 5]) / 20)
    with pytest.raises(ValueError, match="observed steps"):
        observation_from_history(items, ratings, mask, SimulatorConfig(history_len=2))


def test_rank_excludes_what_it_is_told_for_both_kinds_of_policy(world, stats):
    _, obs = played_sim(world)
    exclude = torch.zeros(16, N_ITEMS, dtype=torch.bool)
    exclude[:, stats.count.argsort(descending=True)[:3]] = True  # the three most popular
    for policy in (most_popular(stats), softmax_policy(most_popular(stats), 10.0)):
        top = policy.rank(obs, 5, exclude=exclude)
        assert not exclude.gather(1, top).any(), policy
        wider = policy.rank(obs, 8)
        for row in range(16):
            kept = [item for item in wider[row].tolist() if not exclude[row, item]]
            assert top[row].tolist() == kept[:5], policy
