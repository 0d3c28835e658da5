"""Lesson 09's pieces: a title's log-likelihood, the packed scorer, the LM re-ranker, LoRA, GRPO's
advantages, loss and KL, session states and their replays; each against a hand computation, an
independent implementation or a known optimum."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from recrl_lib.agents import Policy, click_through_recommender, interleave, most_popular
from recrl_lib.agents.grpo import (
    GRPOConfig,
    candidate_kl,
    frac_reward_zero_std,
    group_advantages,
    grpo_loss,
    k3_kl,
    train_grpo,
)
from recrl_lib.agents.lm_policy import LMRecommender, add_lora, sft_loss, train_sft
from recrl_lib.agents.states import LookaheadReward, decision_values, sample_session_states
from recrl_lib.encoders.language_model import (
    candidate_log_likelihoods,
    candidate_log_likelihoods_flat,
    sequence_log_likelihood,
)
from recrl_lib.encoders.prompts import chat_prompts, session_text, user_past
from recrl_lib.envs import SimulatorConfig, UserSimulator
from tests.conftest import N_ITEMS
from tests.tiny_lm import VOCAB, CharTokenizer, tiny_llama

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TITLES = [f"Movie {chr(65 + i % 26)}{i}" for i in range(N_ITEMS)]


def recommender(stats, *, lora: bool = False, seed: int = 0, **settings) -> LMRecommender:
    model = tiny_llama(seed)
    if lora:  # every projection: the tiny model's q and v alone move it too slowly for a test
        model = add_lora(model, seed=seed, targets=PROJECTIONS)
    return LMRecommender(model, CharTokenizer(), TITLES, most_popular(stats), **settings)


# ---------------------------------------------------------------- scoring


def test_sequence_log_likelihood_is_a_hand_computed_sum_that_ignores_padding():
    logits = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0], [5.0, -3.0, 9.0]]])
    targets = torch.tensor([[2, 0, 1]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    by_hand = (2 - np.log(1 + np.e + np.e**2)) + (1 - np.log(3 * np.e))
    assert sequence_log_likelihood(logits, targets, mask).item() == pytest.approx(by_hand)
    changed = logits.clone()
    changed[0, 2] = torch.tensor([-50.0, 20.0, 0.0])  # the padded position: anything at all
    assert sequence_log_likelihood(changed, targets, mask).item() == pytest.approx(by_hand)


def test_the_packed_scorer_gives_the_plain_scores():
    model = tiny_llama(3)
    g = torch.Generator().manual_seed(0)

    def tokens(n: int) -> list[int]:
        return torch.randint(1, VOCAB, (n,), generator=g).tolist()

    prompts = [tokens(7), tokens(3), tokens(12)]  # ragged: left padding in the packed batch
    titles = [[tokens(int(n)) for n in torch.randint(1, 6, (4,), generator=g)] for _ in prompts]
    with torch.no_grad():
        flat, flat_lengths = candidate_log_likelihoods_flat(model, prompts, titles)
        packed, lengths = candidate_log_likelihoods(model, prompts, titles)
    assert torch.equal(lengths, flat_lengths)
    assert torch.allclose(packed, flat, atol=1e-4), (packed - flat).abs().max()
    with pytest.raises(ValueError, match="same number C of non-empty"):
        candidate_log_likelihoods(model, prompts, [titles[0], titles[1][:2], titles[2]])


# ---------------------------------------------------------------- GRPO


def test_group_advantages_by_hand_and_at_the_edges():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [3.0, 1.0, 2.0, 2.0]])
    mean = rewards.mean(1, keepdim=True)
    std = ((rewards - mean) ** 2).mean(1, keepdim=True).sqrt()  # ddof 0
    assert torch.allclose(group_advantages(rewards), (rewards - mean) / (std + 1e-4))
    assert (group_advantages(torch.full((2, 5), 0.7)) == 0).all()  # equal rewards teach nothing
    assert (group_advantages(torch.tensor([[4.0], [1.0]])) == 0).all()  # G = 1
    assert frac_reward_zero_std(torch.tensor([[1.0, 1.0], [0.0, 1.0]])) == 0.5
    with pytest.raises(ValueError, match="prompts, group"):
        group_advantages(torch.ones(4))


def test_grpo_loss_matches_an_independent_numpy_computation():
    g = torch.Generator().manual_seed(1)
    P, C, G, clip, beta = 3, 5, 6, 0.2, 0.07
    log_probs = torch.randn(P, C, generator=g).log_softmax(1)
    ref = torch.randn(P, C, generator=g).log_softmax(1)
    actions = torch.randint(C, (P, G), generator=g)
    old = log_probs.gather(1, actions) + 0.5 * torch.randn(P, G, generator=g)  # ratios off 1
    advantages = torch.randn(P, G, generator=g)
    loss, info = grpo_loss(log_probs, old, actions, advantages, ref, clip=clip, kl_coef=beta)

    lp, rf, a, o, A = (x.double().numpy() for x in (log_probs, ref, actions, old, advantages))
    new = np.take_along_axis(lp, a.astype(int), 1)
    ratio = np.exp(new - o)
    objective = np.minimum(ratio * A, np.clip(ratio, 1 - clip, 1 + clip) * A)
    kl = (np.exp(lp) * (lp - rf)).sum(1).mean()
    assert loss.item() == pytest.approx(-objective.mean() + beta * kl, rel=1e-5)
    assert info["kl"] == pytest.approx(kl, rel=1e-5)
    assert info["clip_fraction"] == pytest.approx((np.abs(ratio - 1) > clip).mean())
    # both edges of the clip are met in this batch: where it binds, the gradient is 0
    binding = ((ratio > 1 + clip) & (A > 0)) | ((ratio < 1 - clip) & (A < 0))
    assert binding.any() and (~binding).any()


def test_the_clip_stops_the_gradient_only_where_it_binds():
    logits = torch.zeros(1, 2, requires_grad=True)
    actions = torch.tensor([[0, 1]])
    old = torch.log(torch.tensor([[0.3, 0.5]]))  # ratios 0.5 / 0.3 = 1.67 (clipped), 1.0
    advantages = torch.tensor([[1.0, 1.0]])
    ref = torch.log(torch.tensor([[0.5, 0.5]]))
    loss, _ = grpo_loss(logits.log_softmax(1), old, actions, advantages, ref, kl_coef=0.0)
    (grad,) = torch.autograd.grad(loss, logits)
    # only a_1's term moves: loss = −(1.2 + π_1 / 0.5) / 2, so dL/dz = −(∂π_1/∂z) / 1.0
    pi = torch.tensor([0.5, 0.5])
    expected = -torch.tensor([-pi[0] * pi[1], pi[1] * (1 - pi[1])]) / 1.0
    assert loss.item() == pytest.approx(-(1.2 + 1.0) / 2)
    assert torch.allclose(grad[0], expected)


def test_k3_is_an_unbiased_estimate_of_the_exact_kl():
    g = torch.Generator().manual_seed(2)
    log_p = torch.randn(1, 6, generator=g).log_softmax(1)
    log_q = torch.randn(1, 6, generator=g).log_softmax(1)
    draws = torch.multinomial(log_p.exp(), 50_000, replacement=True, generator=g)
    k3 = k3_kl(log_p.gather(1, draws), log_q.gather(1, draws))[0]
    exact = candidate_kl(log_p, log_q).item()
    assert (k3 >= 0).all()
    assert abs(k3.mean().item() - exact) < 3 * k3.std().item() / len(k3) ** 0.5
    assert candidate_kl(log_p, log_p).abs().item() < 1e-6


# ---------------------------------------------------------------- the re-ranker, LoRA


def played(world, steps: int = 3, batch: int = 8):
    sim = UserSimulator(world, SimulatorConfig(horizon=20), batch_size=batch, device="cpu")
    obs = sim.reset(seed=0)
    for t in range(steps):
        obs, *_ = sim.step(torch.arange(batch) % N_ITEMS + t)
    return sim, obs


def test_the_prompt_is_the_session_log_in_words(world):
    _, obs = played(world, steps=2, batch=1)
    text = session_text(obs, TITLES, last=4)[0]
    shown = [TITLES[i] for i in obs["items"][0, -2:].tolist()]
    assert text.startswith("Shown: ") and all(title in text for title in shown)
    clicked = obs["clicks"][0, -2:].tolist()
    assert text.count("(watched") == sum(clicked) and text.count("(skipped)") == 2 - sum(clicked)
    fresh = UserSimulator(world, SimulatorConfig(horizon=20), batch_size=1).reset(seed=0)
    assert session_text(fresh, TITLES) == ["A new session. First movie?"]
    with pytest.raises(ValueError, match="last must be >= 1"):
        session_text(obs, TITLES, last=0)
    assert chat_prompts(["hi"], CharTokenizer())[0][-1] == CharTokenizer()(">").input_ids[0]


def test_a_known_users_prompt_starts_with_what_the_training_split_says_they_liked(world, stats):
    ratings = pd.DataFrame(  # user 0: three liked, one disliked; user 1: one liked; user 2: none
        {
            "user": [0, 0, 0, 0, 0, 1, 1, 2],
            "item": [5, 6, 7, 8, 9, 3, 4, 2],
            "rating": [5, 4, 2, 4, 5, 5, 1, 3],
            "timestamp": [50, 10, 20, 30, 40, 10, 20, 10],
        }
    )
    data = SimpleNamespace(train=ratings, n_users=4)  # what user_past reads: the training split
    past = user_past(data, length=3)
    # user 0's liked items by time: 6 (10), 8 (30), 9 (40), 5 (50): the last three, oldest first
    assert past.tolist() == [[8, 9, 5], [3, -1, -1], [-1, -1, -1], [-1, -1, -1]]
    sim = UserSimulator(world, SimulatorConfig(horizon=20, observe_user=True), batch_size=3)
    obs = sim.reset(seed=0, users=torch.tensor([0, 2, 1]))
    obs["user"][2, 0] = -1  # an unknown user: no past
    texts = session_text(obs, TITLES, past=past)
    assert (
        texts[0]
        == f"Liked before: {TITLES[8]}; {TITLES[9]}; {TITLES[5]}. A new session. First movie?"
    )
    assert texts[1] == texts[2] == "A new session. First movie?"
    assert session_text(obs, TITLES) == ["A new session. First movie?"] * 3
    anonymous = UserSimulator(world, SimulatorConfig(horizon=20), batch_size=1).reset(seed=0)
    with pytest.raises(KeyError, match="observe_user=True"):
        session_text(anonymous, TITLES, past=past)
    with pytest.raises(ValueError, match="length must be >= 1"):
        user_past(data, length=0)
    # the re-ranker's own prompts carry it
    lm = LMRecommender(tiny_llama(0), CharTokenizer(), TITLES, most_popular(stats), user_past=past)
    assert lm.prompts(obs)[0] == chat_prompts([texts[0]], CharTokenizer())[0]


def test_the_re_ranker_is_a_distribution_over_the_retrievers_candidates(world, stats):
    _, obs = played(world)
    lm = recommender(stats, n_candidates=5)
    candidates = lm.candidates(obs)
    assert torch.equal(candidates, most_popular(stats).rank(obs, 5))
    with torch.no_grad():
        log_pi = lm.log_probs(obs)
    assert log_pi.shape == (8, 5) and torch.allclose(log_pi.exp().sum(1), torch.ones(8))
    probs = lm.sampling(seed=0).probs(obs)
    assert torch.allclose(probs.sum(1), torch.ones(8))
    assert (probs > 0).sum(1).max() <= 5 and (probs.gather(1, candidates) > 0).all()
    pick = lm.greedy()(obs)
    assert torch.equal(pick, candidates.gather(1, log_pi.argmax(1, keepdim=True))[:, 0])
    # a temperature flattens the policy without changing the greedy pick
    hot = recommender(stats, n_candidates=5, temperature=4.0)
    with torch.no_grad():
        entropy = -(log_pi.exp() * log_pi).sum(1)
        hot_log_pi = hot.log_probs(obs)
    assert ((-(hot_log_pi.exp() * hot_log_pi).sum(1)) >= entropy - 1e-6).all()
    assert torch.equal(hot.greedy()(obs), pick)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        recommender(stats, temperature=0.0)
    with pytest.raises(ValueError, match="n_candidates must be >= 2"):
        recommender(stats, n_candidates=1)


def test_lora_starts_as_the_reference_trains_only_adapters_and_can_be_switched_off(world, stats):
    _, obs = played(world)
    lm = recommender(stats, lora=True, n_candidates=4)
    trainable = [n for n, p in lm.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():
        start = lm.log_probs(obs)
        with lm.reference():
            assert torch.equal(lm.log_probs(obs), start)
    optimizer = torch.optim.SGD([p for p in lm.model.parameters() if p.requires_grad], lr=1.0)
    (-lm.log_probs(obs)[:, 0].mean()).backward()
    optimizer.step()
    with torch.no_grad():
        assert not torch.allclose(lm.log_probs(obs), start)  # the adapters moved the policy
        with lm.reference():
            assert torch.allclose(lm.log_probs(obs), start, atol=1e-6)  # the reference did not


def test_grpo_and_sft_move_the_policy_toward_what_they_are_taught(world, stats):
    """A known optimum: reward 1 for even item ids. GRPO raises the expected reward on fixed
    states; SFT on the first candidate raises its probability."""
    sim = UserSimulator(world, SimulatorConfig(horizon=20), batch_size=32, seed=0, device="cpu")
    good = (torch.arange(N_ITEMS) % 2 == 0).float()
    lm = recommender(stats, lora=True, n_candidates=6)
    fixed = sample_session_states(sim, lm.retriever, 8, max_steps=5, seed=99)

    def expected_reward() -> float:
        with torch.no_grad():
            candidates = lm.candidates(fixed.obs)
            return (lm.log_probs(fixed.obs, candidates).exp() * good[candidates]).sum(1).mean()

    before = expected_reward()
    history = train_grpo(
        lm,
        lambda step: sample_session_states(sim, lm.retriever, 4, max_steps=5, seed=step),
        lambda states, items: good[items],
        GRPOConfig(steps=40, prompts_per_step=4, group_size=16, learning_rate=0.03, kl_coef=0.0),
        evaluate=lambda: {"expected": float(expected_reward())},
        evaluate_every=20,
        progress=False,
    )
    assert expected_reward() > before + 0.2, (before, history["expected"].dropna().tolist())
    assert {"reward", "kl", "frac_reward_zero_std", "seconds: reference pass"} <= set(history)
    assert len(history) == 41 and history["expected"].notna().sum() == 3

    imitator = recommender(stats, lora=True, n_candidates=6, seed=1)
    with torch.no_grad():
        first_before = imitator.log_probs(fixed.obs)[:, 0].mean()

    def examples(step):
        return fixed, imitator.candidates(fixed.obs), torch.zeros(8, dtype=torch.long)

    train_sft(imitator, examples, steps=20, learning_rate=0.05, progress=False)
    with torch.no_grad():
        assert imitator.log_probs(fixed.obs)[:, 0].mean() > first_before + 0.5
    assert sft_loss(torch.log(torch.tensor([[0.5, 0.5]])), torch.tensor([1])).item() == (
        pytest.approx(np.log(2))
    )
    with pytest.raises(ValueError, match="add LoRA adapters first"):
        train_grpo(recommender(stats), None, None, GRPOConfig(steps=1), progress=False)


# ---------------------------------------------------------------- states and replays


def test_session_states_are_live_and_their_snapshot_is_theirs(world, stats):
    sim = UserSimulator(world, SimulatorConfig(horizon=20), batch_size=32, seed=0, device="cpu")
    states = sample_session_states(sim, most_popular(stats), 10, max_steps=8, seed=3)
    assert len(states) == 10
    assert torch.equal(states.snapshot["hist_items"], states.obs["items"])
    assert (states.snapshot["budget"] > 0).all()  # none has ended
    steps = states.obs["mask"].sum(1)
    assert steps.max() <= 8 and steps.unique().numel() > 1  # stopped at different steps
    part = states.select(torch.tensor([0, 2]))
    assert torch.equal(part.obs["items"], states.obs["items"][[0, 2]])
    with pytest.raises(ValueError, match="only .* were alive"):
        sample_session_states(sim, most_popular(stats), 33, max_steps=3, seed=3)


def test_a_replay_restores_the_state_and_pairs_up_under_one_seed(world, stats):
    sim = UserSimulator(world, SimulatorConfig(horizon=20), batch_size=16, seed=0, device="cpu")
    states = sample_session_states(sim, most_popular(stats), 6, max_steps=4, seed=1)
    before = {k: v.clone() for k, v in states.snapshot.items()}
    clicks = LookaheadReward(sim, most_popular(stats), lookahead=1, seed=0)
    items = most_popular(stats).rank(states.obs, 3)
    once = clicks(states, items.repeat_interleave(50, 1), seed=4)
    assert once.shape == (6, 150) and set(once.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(clicks(states, items.repeat_interleave(50, 1), seed=4), once)
    assert all(torch.equal(before[k], states.snapshot[k]) for k in before)  # states untouched
    # each replay is its own draw: the click rates match the hidden click probabilities
    truth = UserSimulator(world, SimulatorConfig(horizon=20), batch_size=6, device="cpu")
    truth.load_state_dict(states.snapshot | {"generator": truth.generator.get_state()})
    p = torch.sigmoid(truth.logits(items))
    rate = once.view(6, 3, 50).mean(2)
    assert ((rate - p).abs() <= 4 * (p * (1 - p) / 50).sqrt() + 0.02).all()
    # satisfaction: a click weighted by its rating, in [0, 1]; longer lookaheads add steps
    satisfied = LookaheadReward(sim, most_popular(stats), satisfaction=True, seed=0)(states, items)
    assert ((satisfied >= 0) & (satisfied <= 1)).all()
    five = LookaheadReward(sim, most_popular(stats), lookahead=5, seed=0)(states, items)
    assert five.max() <= 5 and five.mean() > once.mean()
    values = decision_values(states, most_popular(stats), clicks, repeats=8, seed=2)
    assert values.shape == (6,)
    with pytest.raises(ValueError, match="lookahead must be >= 1"):
        LookaheadReward(sim, most_popular(stats), lookahead=0)


# ---------------------------------------------------------------- retrievers


def test_interleave_takes_each_sources_best_in_turn(world):
    _, obs = played(world, steps=1, batch=2)
    g = torch.Generator().manual_seed(0)
    first_scores, second_scores = torch.randperm(N_ITEMS, generator=g), torch.randperm(N_ITEMS)
    first = Policy("first", lambda o: first_scores.float().expand(2, -1), N_ITEMS)
    second = Policy("second", lambda o: second_scores.float().expand(2, -1), N_ITEMS)
    blend = interleave([first, second])
    a, b = first.rank(obs, 6), second.rank(obs, 6)
    top = blend.rank(obs, 6)
    for row in range(2):
        expected = []
        for pair in zip(a[row].tolist(), b[row].tolist()):
            expected += [i for i in pair if i not in expected]
        assert top[row].tolist() == expected[:6]
    assert torch.equal(blend(obs), first(obs))
    with pytest.raises(ValueError, match="same catalogue"):
        interleave([first, Policy("small", first.score, N_ITEMS - 1)])


def test_click_through_rates_are_shrunk_toward_the_overall_rate():
    shown = torch.tensor([0, 0, 0, 1])
    clicked = torch.tensor([1.0, 1.0, 0.0, 0.0])
    policy = click_through_recommender(shown, clicked, 3, prior_shows=2.0)
    obs = {"items": torch.zeros(1, 1, dtype=torch.long), "mask": torch.zeros(1, 1, dtype=bool)}
    rate = policy.score(obs)[0]
    overall = 0.5
    expected = [(2 + 2 * overall) / 5, (0 + 2 * overall) / 3, overall]
    assert torch.allclose(rate, torch.tensor(expected))
    with pytest.raises(ValueError, match="non-empty"):
        click_through_recommender(torch.tensor([]), torch.tensor([]), 3)


# ---------------------------------------------------------------- the real model, once


def test_smollm2_loads_truncated_and_scores_alike_both_ways():
    from recrl_lib.encoders.language_model import load_language_model

    model, tokenizer = load_language_model(n_layers=2, device="cpu")
    assert len(model.model.layers) == 2 and model.config.num_hidden_layers == 2
    assert not any(p.requires_grad for p in model.parameters())
    prompts = chat_prompts(["Shown: Star Wars (watched, 5/5). Next?", "First movie?"], tokenizer)
    titles = [
        [tokenizer(t, add_special_tokens=False).input_ids for t in ("Fargo", "Toy Story")]
    ] * 2
    with torch.no_grad():
        flat, _ = candidate_log_likelihoods_flat(model, prompts, titles)
        packed, _ = candidate_log_likelihoods(model, prompts, titles)
    assert torch.allclose(flat, packed, atol=1e-3)
    with pytest.raises(ValueError, match="n_layers must be in 1..30"):
        load_language_model(n_layers=31)
