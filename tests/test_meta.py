"""Meta-RL (agents/meta.py) and users who come back (UserSimulator.new_session)."""

from __future__ import annotations

import pytest
import torch

from recrl_lib.agents import PPOConfig
from recrl_lib.agents.meta import (
    AdaptingAgent,
    CohortTasks,
    FixedAgent,
    RL2Agent,
    RL2Network,
    Session,
    SessionPolicy,
    adapt,
    catalogue_vectors,
    cohort_favourites,
    conflict_catalogue,
    per_user_copy,
    play_session,
    reptile_update,
    reset_memory,
    rows_of,
    run_trial,
    session_reinforce_loss,
    shown_by_owner,
    train_reptile,
    train_rl2,
    train_sessions,
    trial_gae,
)
from recrl_lib.agents.ppo import gae, returns_to_go
from recrl_lib.envs import SimulatorConfig, UserSimulator, World


@pytest.fixture
def world():
    return World.random(n_users=60, n_items=40, dim=8, seed=3)


@pytest.fixture
def setup(world):
    catalogue = conflict_catalogue(world, per_cohort=6)
    vectors = torch.randn(len(catalogue), 5, generator=torch.Generator().manual_seed(0))
    policy = SessionPolicy(vectors, catalogue, world.n_items, hidden=16)
    sim = UserSimulator(world, SimulatorConfig(horizon=6), batch_size=8, seed=1, device="cpu")
    tasks = CohortTasks(world, held_out=(2,))
    return policy, sim, tasks


# ----------------------------------------------------------------------------- users come back


def test_a_user_who_comes_back_keeps_the_hidden_vector_and_starts_a_fresh_session(world):
    sim = UserSimulator(world, SimulatorConfig(horizon=20), batch_size=16, seed=0, device="cpu")
    sim.reset()
    for _ in range(5):
        sim.step(torch.randint(world.n_items, (16,), generator=torch.Generator().manual_seed(_)))
    ids, vectors = sim.user_ids.clone(), sim.user_vectors.clone()
    assert (sim.satiation > 0).any() and (sim.budget != sim.config.budget_init).any()
    rows = torch.arange(16) < 10
    obs = sim.new_session(rows)
    assert torch.equal(sim.user_ids, ids)
    assert torch.equal(sim.user_vectors, vectors)  # drift included: the vector as it was left
    assert not torch.equal(vectors, world.user_vectors[ids])  # ... and it did drift
    assert (sim.satiation[rows] == 0).all() and (sim.budget[rows] == sim.config.budget_init).all()
    assert (
        (sim.t[rows] == 0).all()
        and not obs["mask"][rows].any()
        and (obs["session"][rows] == 0).all()
    )
    assert (sim.t[~rows] == 5).all() and obs["mask"][~rows].any()  # other rows untouched
    sim.reset()
    assert not torch.equal(sim.user_ids, ids)  # reset brings new users


# ----------------------------------------------------------------------------- tasks


def test_the_conflict_catalogue_holds_each_cohorts_relative_favourites(world):
    catalogue = conflict_catalogue(world, per_cohort=5)
    assert len(catalogue) <= 5 * world.n_cohorts and len(set(catalogue.tolist())) == len(catalogue)
    assert not world.clickbait[catalogue].any()
    affinity = world.affinity_all(world.user_vectors)
    means = torch.stack([affinity[world.cohorts == c].mean(0) for c in range(world.n_cohorts)])
    contrast = means[0] - means[1:].mean(0)
    best = contrast.masked_fill(world.clickbait, -float("inf")).argmax()
    assert best in catalogue
    favourites = cohort_favourites(world, per_cohort=5)
    assert all(len(items) == 5 for items in favourites.values())
    assert catalogue.tolist() == sorted(set(torch.cat(list(favourites.values())).tolist()))


def test_catalogue_vectors_are_the_principal_components_at_unit_scale():
    features = torch.randn(30, 12, generator=torch.Generator().manual_seed(0))
    catalogue = torch.tensor([1, 4, 5, 9, 11, 12, 17, 20, 22, 25, 28])
    vectors = catalogue_vectors(features, catalogue, dim=4)
    x = features[catalogue].double() - features[catalogue].double().mean(0)
    _, eigenvectors = torch.linalg.eigh(x.T @ x)  # the covariance's eigenvectors, ascending
    reference = x @ eigenvectors[:, -4:].flip(1)
    reference = (reference / reference.std(0)).float()
    signs = torch.sign((vectors * reference).sum(0))  # a principal direction's sign is arbitrary
    assert torch.allclose(vectors, reference * signs, atol=1e-4)
    with pytest.raises(ValueError, match="dim must be between 1 and 10"):
        catalogue_vectors(features, catalogue, dim=11)


def test_tasks_sample_evenly_from_the_cohorts_asked_and_check_held_out(world):
    tasks = CohortTasks(world, held_out=(1,))
    assert tasks.train_cohorts == (0, 2)
    users, labels = tasks.sample(10, tasks.train_cohorts, torch.Generator().manual_seed(0))
    assert users.shape == (10, 8) and labels.tolist() == [0, 2] * 5
    with pytest.raises(ValueError, match="held_out"):
        CohortTasks(world, held_out=(0, 1, 2))
    with pytest.raises(ValueError, match="held_out"):
        CohortTasks(world, held_out=(7,))


def test_held_out_cohorts_never_reach_training(setup, monkeypatch):
    policy, sim, tasks = setup
    seen = []
    sample = tasks.sample

    def recording(n, cohorts, generator):
        users, labels = sample(n, cohorts, generator)
        seen.extend(labels.tolist())
        return users, labels

    monkeypatch.setattr(tasks, "sample", recording)
    pooled, _ = train_sessions(
        policy, sim, tasks, tasks.train_cohorts, iterations=2, progress=False
    )
    train_reptile(policy, sim, tasks, pooled, sessions=2, iterations=2, progress=False)
    rl2 = RL2Network(policy, 2, pooled)
    trial_config = PPOConfig(target_kl=None)
    train_rl2(rl2, policy, sim, tasks, trial_config, iterations=2, progress=False)
    assert seen and 2 not in seen
    for unused in [
        dict(),
        dict(num_steps=8),
        dict(target_kl=None, total_steps=1000),
        dict(target_kl=None, use_critic=False),
    ]:
        with pytest.raises(ValueError, match="train_rl2 does not use"):
            train_rl2(rl2, policy, sim, tasks, PPOConfig(**unused), iterations=1, progress=False)


# ----------------------------------------------------------------------------- the policy


def test_rows_with_different_parameters_act_independently(setup):
    policy, sim, _ = setup
    g = torch.Generator().manual_seed(0)
    params = policy.init(3, g)
    state = torch.randn(4, policy.state_dim, generator=g)
    which = torch.tensor([0, 2, 1, 2])
    together = policy.logits(state, rows_of(params, which))
    for b in range(4):
        alone = policy.logits(state[b : b + 1], rows_of(params, which[b : b + 1]))
        assert torch.allclose(together[b], alone[0], atol=1e-6)


def _one_session_per_user(policy, sim, seed):
    """Fresh users each served by their own copy of one initial parameter set."""
    g = torch.Generator().manual_seed(seed)
    params = per_user_copy(policy.init(1, g), sim.batch_size)
    sim.reset()
    return params, play_session(sim, policy, lambda s: policy.logits(s, params), g)


def test_each_users_loss_reaches_only_that_users_copy(setup):
    policy, sim, _ = setup
    params, session = _one_session_per_user(policy, sim, seed=0)
    loss = session_reinforce_loss(policy, session, params, baseline="user")
    (grad_all,) = torch.autograd.grad(loss.sum(), params["bias"], retain_graph=True)
    (grad_3,) = torch.autograd.grad(loss[3], params["bias"])
    assert torch.allclose(grad_all[3], grad_3[3]) and (grad_3[torch.arange(8) != 3] == 0).all()


def test_one_adaptation_step_raises_the_items_the_user_clicked(setup):
    policy, sim, _ = setup
    params, session = _one_session_per_user(policy, sim, seed=2)
    new = adapt(policy, params, session, lr=1.0)
    change = (new["bias"] - params["bias"]).detach()
    clicked = session.rewards > 0
    for b in range(sim.batch_size):
        live = session.live[:, b]
        if clicked[:, b].any() and (~clicked[:, b] & live).any():
            up = change[b, session.actions[clicked[:, b], b]]
            down = change[b, session.actions[~clicked[:, b] & live, b]]
            assert up.min() > down.max()


# ----------------------------------------------------------------------------- Reptile


def test_reptile_update_on_quadratic_tasks_matches_the_hand_computation():
    """Task i: L_i(φ) = ½‖φ − c_i‖². k SGD steps of size α from θ give
    φ_i = c_i + (1 − α)^k (θ − c_i), so θ' = θ + ε (1 − (1 − α)^k)(c̄ − θ)."""
    g = torch.Generator().manual_seed(0)
    theta = {"w": torch.randn(1, 3, generator=g)}
    centres = torch.randn(5, 3, generator=g)
    alpha, k, eps = 0.3, 4, 0.5
    phi = theta["w"].expand(5, 3).clone()
    for _ in range(k):
        phi = phi.requires_grad_()
        (grad,) = torch.autograd.grad((0.5 * (phi - centres) ** 2).sum(), phi)
        phi = (phi - alpha * grad).detach()
    new = reptile_update(theta, {"w": phi}, eps)["w"]
    expected = theta["w"] + eps * (1 - (1 - alpha) ** k) * (centres.mean(0) - theta["w"])
    assert torch.allclose(new, expected, atol=1e-6)
    for _ in range(200):  # the fixed point is the mean of the task optima
        theta = reptile_update(
            theta, {"w": centres + (1 - alpha) ** k * (theta["w"] - centres)}, eps
        )
    assert torch.allclose(theta["w"][0], centres.mean(0), atol=1e-5)


# ----------------------------------------------------------------------------- RL²


def test_the_memory_is_wiped_between_users_and_kept_between_sessions():
    memory = torch.arange(12.0).view(3, 4)
    kept = reset_memory(memory, torch.tensor([False, True, False]))
    assert torch.equal(kept[[0, 2]], memory[[0, 2]]) and (kept[1] == 0).all()


def test_rl2_remembers_a_users_sessions_and_forgets_between_users(setup, world):
    policy, sim, tasks = setup
    network = RL2Network(policy, 3)
    agent = RL2Agent("RL²", network)
    g = torch.Generator().manual_seed(0)
    users, labels = tasks.sample(sim.batch_size, tasks.train_cohorts, g)
    _, played = run_trial(sim, policy, agent, users, labels, 3, g)
    memory = torch.zeros(sim.batch_size, network.memory_size)
    for session in played:  # carried over: m_{k+1} = GRU(end of session k, m_k), never reset
        memory = network.remember(memory, session.final_state)
    assert torch.allclose(agent.memory, memory.detach(), atol=1e-6) and agent.memory.abs().sum() > 0
    agent.begin(labels)  # new users arrive
    assert (agent.memory == 0).all() and agent.session == 0


def test_without_carried_memory_every_session_starts_from_an_empty_memory(setup):
    """The ablation: same network, but nothing of session k reaches session k + 1."""
    policy, sim, tasks = setup
    network = RL2Network(policy, 3, carry_memory=False)
    for weight in (network.read_memory.weight, network.cell.weight_hh, network.cell.bias_hh):
        torch.nn.init.normal_(weight)  # a memory that would matter if it were kept
    agent = RL2Agent("no memory", network)
    g = torch.Generator().manual_seed(0)
    users, labels = tasks.sample(sim.batch_size, tasks.train_cohorts, g)
    _, played = run_trial(sim, policy, agent, users, labels, 3, g)
    assert (agent.memory == 0).all() and agent.session == 3
    carried = RL2Network(policy, 3, carry_memory=True)
    carried.load_state_dict(network.state_dict())
    assert carried.remember(agent.memory, played[-1].final_state).abs().sum() > 0


def test_rl2_starts_as_the_policy_it_is_initialised_from(setup):
    policy, sim, _ = setup
    g = torch.Generator().manual_seed(0)
    params = policy.init(1, g)
    params["bias"] += torch.randn(params["bias"].shape, generator=g)
    network = RL2Network(policy, 3, params)
    state = torch.randn(2, 5, policy.state_dim, generator=g)
    memory = torch.randn(5, network.memory_size, generator=g)
    expected = policy.logits(state, rows_of(params, torch.zeros(5, dtype=torch.long)))
    assert torch.allclose(network.logits(state, memory, 1), expected, atol=1e-5)


def test_trial_gae_runs_over_live_steps_across_sessions():
    g = torch.Generator().manual_seed(0)
    T, B = 7, 3
    rewards, values = torch.rand(T, B, generator=g), torch.rand(T, B, generator=g)
    live = torch.ones(T, B, dtype=torch.bool)
    live[2:4, 1] = False  # row 1: a session ended early, the next began at step 4
    live[5:, 2] = False  # row 2: the trial ended at step 4
    rewards = rewards * live
    advantages, returns = trial_gae(rewards, values, live, 0.9, 0.8)
    for b in range(B):
        steps = live[:, b].nonzero()[:, 0]
        r, v = rewards[steps, b][:, None], values[steps, b][:, None]
        end = torch.zeros_like(r, dtype=torch.bool)
        end[-1] = True
        expected, _ = gae(r, v, torch.cat([v[1:], torch.zeros(1, 1)]), end, end, 0.9, 0.8)
        assert torch.allclose(advantages[steps, b], expected[:, 0], atol=1e-6)
        assert (advantages[~live[:, b], b] == 0).all()
    assert torch.allclose(returns[live], (advantages + values)[live])


# ----------------------------------------------------------------------------- trials


def test_fixed_agents_only_the_per_cohort_reference_reads_the_cohort(setup):
    policy, sim, tasks = setup
    g = torch.Generator().manual_seed(0)
    params = policy.init(3, g)
    pooled, reference = (
        FixedAgent("pooled", policy, params),
        FixedAgent("ref", policy, params, per_cohort=True),
    )
    assert not pooled.oracle and reference.oracle
    state = torch.randn(4, policy.state_dim, generator=g)
    for cohorts in (torch.tensor([0, 1, 2, 0]), torch.tensor([2, 2, 1, 1])):
        pooled.begin(cohorts)
        reference.begin(cohorts)
        assert torch.allclose(
            pooled.logits(state), policy.logits(state, rows_of(params, 0 * cohorts))
        )
        assert torch.allclose(
            reference.logits(state), policy.logits(state, rows_of(params, cohorts))
        )


def test_an_adapting_agent_starts_every_new_user_from_its_initialisation(setup):
    policy, sim, tasks = setup
    g = torch.Generator().manual_seed(0)
    init = policy.init(1, g)
    agent = AdaptingAgent("fine-tuned", policy, init, lr=1.0)
    users, labels = tasks.sample(sim.batch_size, tasks.train_cohorts, g)
    run_trial(sim, policy, agent, users, labels, 2, g)
    assert not torch.allclose(agent.params["bias"], init["bias"].expand_as(agent.params["bias"]))
    agent.begin(labels)
    assert torch.equal(agent.params["bias"], init["bias"].expand_as(agent.params["bias"]))


def test_a_trial_is_the_same_users_session_after_session(setup):
    policy, sim, tasks = setup
    g = torch.Generator().manual_seed(0)
    users, labels = tasks.sample(sim.batch_size, tasks.train_cohorts, g)
    agent = FixedAgent("pooled", policy, policy.init(1, g))
    returns, played = run_trial(sim, policy, agent, users, labels, 3, g)
    assert returns.shape == (sim.batch_size, 3) and len(played) == 3
    assert (sim.user_ids == -1).all()  # synthetic users, kept for the whole trial
    assert torch.equal(returns[:, 2], played[2].rewards.sum(0))


def test_a_user_whose_session_ended_comes_back_as_they_left(setup):
    policy, sim, tasks = setup
    g = torch.Generator().manual_seed(0)
    rows = rows_of(policy.init(1, g), torch.zeros(sim.batch_size, dtype=torch.long))
    users, _ = tasks.sample(sim.batch_size, tasks.train_cohorts, g)
    sim.reset(user_vectors=users)
    ended, seen = {}, torch.zeros(sim.batch_size, dtype=torch.bool)
    original_step = sim.step

    def step(actions, active=None):
        result = original_step(actions, active=active)
        for b in (~active & ~seen).nonzero()[:, 0].tolist():  # the first step after b ended
            ended[b] = (sim.user_vectors[b].clone(), sim.budget[b].item(), sim.t[b].item())
        seen.copy_(seen | ~active)
        return result

    sim.step = step
    session = play_session(sim, policy, lambda s: policy.logits(s, rows), g)
    assert ended, "no session ended early: make the test's world harsher"
    for b, (vector, budget, t) in ended.items():
        assert torch.equal(sim.user_vectors[b], vector) and sim.budget[b] == budget
        assert sim.t[b] == t == session.live[:, b].sum()  # frozen at its last live step
        assert (session.rewards[~session.live[:, b], b] == 0).all()


def test_a_catalogue_shorter_than_a_session_is_refused(world):
    policy = SessionPolicy(torch.randn(5, 3), torch.arange(5), world.n_items)
    sim = UserSimulator(world, SimulatorConfig(horizon=6), batch_size=2, device="cpu")
    sim.reset()
    with pytest.raises(ValueError, match="larger catalogue or a shorter"):
        play_session(sim, policy, lambda s: torch.zeros(2, 5), torch.Generator())


@pytest.mark.parametrize("per_cohort", [False, True])
def test_the_same_seed_trains_the_same_policy_to_the_last_bit(setup, world, per_cohort):
    """A batch large enough for CPU threads to split the work: per-cohort rows must not add
    their gradients in a thread-dependent order."""
    policy, _, tasks = setup
    sim = UserSimulator(world, SimulatorConfig(horizon=6), batch_size=256, seed=1, device="cpu")
    runs = [
        train_sessions(
            policy,
            sim,
            tasks,
            tasks.all_cohorts,
            per_cohort=per_cohort,
            iterations=5,
            seed=4,
            progress=False,
        )[0]
        for _ in range(3)
    ]
    assert all(torch.equal(runs[0][k], run[k]) for run in runs[1:] for k in runs[0])


def test_rl2_serves_a_second_user_as_it_served_the_first(setup):
    """Two trials back to back with one agent equal two trials with fresh agents: nothing of
    the first user survives the reset."""
    policy, sim, tasks = setup
    network = RL2Network(policy, 2)
    g = torch.Generator().manual_seed(0)
    first, second = (tasks.sample(sim.batch_size, tasks.train_cohorts, g) for _ in range(2))

    def returns(agents):
        sim.generator.manual_seed(9)
        g = torch.Generator().manual_seed(9)
        out = [run_trial(sim, policy, agent, *users, 2, g)[0] for agent, users in agents]
        return out[1]

    agent = RL2Agent("RL²", network)
    shared = returns([(agent, first), (agent, second)])
    fresh = returns([(RL2Agent("a", network), first), (RL2Agent("b", network), second)])
    assert torch.equal(shared, fresh)


def test_non_oracle_agents_are_not_told_the_cohort(setup):
    policy, sim, tasks = setup
    seen = []

    class Spy(FixedAgent):
        def begin(self, cohorts):
            seen.append(cohorts.clone())
            super().begin(cohorts)

    g = torch.Generator().manual_seed(0)
    users, labels = tasks.sample(sim.batch_size, tasks.train_cohorts, g)
    run_trial(sim, policy, Spy("pooled", policy, policy.init(1, g)), users, labels, 1, g)
    run_trial(
        sim, policy, Spy("ref", policy, policy.init(3, g), per_cohort=True), users, labels, 1, g
    )
    assert (seen[0] == -1).all() and torch.equal(seen[1], labels)


def test_returns_to_go_by_hand():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    expected = torch.tensor([[1 + 0.25, 0.5 + 0.25], [0.5, 1 + 0.5], [1.0, 1.0]])
    assert torch.allclose(returns_to_go(rewards, 0.5), expected)


def test_reinforce_loss_by_hand():
    """Two items x = (1, 0), u = w₀ = ln 3, no bias: π = (3/4, 1/4) at every step; γ = 1/2.
    Row 0 plays 3 steps (rewards 1, 0, 1: G = 1.25, 0.5, 1); row 1's session ends after 2
    (rewards 0, 1: G = 0.5, 1; its third step is not live and must not count)."""
    catalogue = torch.tensor([0, 1])
    policy = SessionPolicy(torch.tensor([[1.0], [0.0]]), catalogue, n_items=2, hidden=3)
    params = {k: torch.zeros_like(v) for k, v in policy.init(2, torch.Generator()).items()}
    params["w0"] += torch.log(torch.tensor(3.0))
    T, B = 3, 2
    session = Session(
        states=torch.randn(T, B, policy.state_dim),  # w₁ = w₂ = 0: the state does not matter
        valid=torch.ones(T, B, 2, dtype=torch.bool),
        actions=torch.tensor([[0, 1], [1, 0], [0, 1]]),
        rewards=torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]),
        live=torch.tensor([[True, True], [True, True], [True, False]]),
        log_probs=torch.zeros(T, B),
        final_state=torch.zeros(B, policy.state_dim),
    )
    log_p = torch.log(torch.tensor([0.75, 0.25]))
    entropy = -(torch.tensor([0.75, 0.25]) * log_p).sum()
    chosen = torch.stack([log_p[[0, 1, 0]], log_p[[1, 0, 1]]])  # [B, T]
    advantages = {  # [B, T]; b_t over the live rows at t, or over the row's own live steps
        "batch": torch.tensor([[1.25 - 0.875, 0.5 - 0.75, 1 - 1], [0.5 - 0.875, 1 - 0.75, 0]]),
        "user": torch.tensor([[1.25 - 2.75 / 3, 0.5 - 2.75 / 3, 1 - 2.75 / 3], [-0.25, 0.25, 0]]),
    }
    live_steps = torch.tensor([3.0, 2.0])
    for baseline, advantage in advantages.items():
        expected = -((advantage * chosen).sum(1) + 0.1 * live_steps * entropy) / T
        loss = session_reinforce_loss(
            policy, session, params, gamma=0.5, ent_coef=0.1, baseline=baseline
        )
        torch.testing.assert_close(loss, expected)


def test_only_the_named_parameters_train_from_the_given_start(setup):
    policy, sim, tasks = setup
    pooled, _ = train_sessions(policy, sim, tasks, tasks.train_cohorts, iterations=2)
    cohorts = tasks.all_cohorts
    context, _ = train_sessions(
        policy, sim, tasks, cohorts, per_cohort=True, init=pooled, trainable=("w0",), iterations=3
    )
    for name, value in context.items():
        assert value.shape[0] == tasks.world.n_cohorts
        if name == "w0":  # every cohort's user vector moved, from the pooled one
            assert (value != pooled[name]).any(dim=1).all()
        else:
            torch.testing.assert_close(value, pooled[name].expand_as(value))
    for bad in [("u",), ()]:
        with pytest.raises(ValueError, match="trainable must name"):
            train_sessions(policy, sim, tasks, cohorts, init=pooled, trainable=bad)
    with pytest.raises(ValueError, match="one parameter set"):
        train_sessions(policy, sim, tasks, cohorts, init=context)
    adapted = per_user_copy(pooled, 1)  # a start that requires grad is taken as a value
    start, _ = train_sessions(policy, sim, tasks, cohorts, init=adapted, iterations=1)
    assert all(v.is_leaf and not v.requires_grad for v in start.values())


def test_shown_by_owner_counts_live_steps_by_hand():
    actions = torch.tensor([[0, 2], [1, 3], [2, 0]])  # [T=3, B=2] catalogue positions
    live = torch.tensor([[True, True], [True, True], [True, False]])
    session = Session(
        states=torch.zeros(3, 2, 1),
        valid=torch.ones(3, 2, 4, dtype=torch.bool),
        actions=actions,
        rewards=torch.zeros(3, 2),
        live=live,
        log_probs=torch.zeros(3, 2),
        final_state=torch.zeros(2, 1),
    )
    owner = torch.tensor([0, 1, 1, -1])
    shares = shown_by_owner([session, session], owner, 2)
    # row 0 showed owners 0, 1, 1; row 1 showed 1 and none (its third step was not live)
    expected = torch.tensor([[1 / 3, 2 / 3], [0.0, 1 / 2]])
    assert torch.allclose(shares[0], expected) and torch.equal(shares[0], shares[1])
    with pytest.raises(ValueError, match="owner must be"):
        shown_by_owner([session], torch.tensor([0, 1]), 2)
