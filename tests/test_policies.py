"""One policy protocol for every policy, and the information boundary: only oracles may read
the simulator's hidden state."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from recrl_lib.agents import (
    DQN,
    PPO,
    BanditRecommender,
    DQNConfig,
    EpsilonGreedyLinear,
    LinearThompson,
    LinUCB,
    LoopLog,
    MFLoopRecommender,
    Policy,
    PopularityRecommender,
    RecActorCritic,
    RecQNetwork,
    click_through_recommender,
    draw_users,
    evaluate_policy,
    greedy_oracle,
    interleave,
    mf_recommender,
    most_popular,
    oracle_planner,
    population_planner,
    random_policy,
    split_users,
    tune_population_planner,
    tune_rule,
)
from recrl_lib.datasets import load_movielens_100k
from recrl_lib.encoders import (
    ItemTable,
    MatrixFactorization,
    catalogue_stats,
    item_features,
)
from recrl_lib.encoders.prompts import user_past
from recrl_lib.envs import SimulatorConfig, UserSimulator, build_world
from tests.conftest import N_ITEMS

ROOT = Path(__file__).resolve().parents[1]


def dqn_policy(user_vectors: torch.Tensor | None = None) -> Policy:
    torch.manual_seed(0)
    items = ItemTable(N_ITEMS, dim=8, text_vectors=torch.randn(N_ITEMS, 6))
    network = RecQNetwork(items, user_vectors=user_vectors)
    return DQN(network, DQNConfig(), device="cpu").policy()


def recommender_mf(n_users: int = 30) -> MatrixFactorization:
    """A factorisation standing in for the recommender's own (fitted on the training split)."""
    torch.manual_seed(1)
    mf = MatrixFactorization(n_users, ItemTable(N_ITEMS, dim=4))
    with torch.no_grad():
        mf.item_bias.normal_()
    return mf


def ppo_policy(greedy: bool) -> Policy:
    torch.manual_seed(0)
    network = RecActorCritic(ItemTable(N_ITEMS, dim=8, text_vectors=torch.randn(N_ITEMS, 6)))
    return PPO(network, device="cpu").policy(greedy=greedy)


def lm_re_ranker(stats, temperature: float = 1.0) -> Policy:
    """Lesson 09's LM re-ranker, on a tiny random Llama with LoRA, over most popular's list."""
    from recrl_lib.agents.lm_policy import LMRecommender, add_lora
    from tests.tiny_lm import CharTokenizer, tiny_llama

    titles = [f"Movie {i}" for i in range(N_ITEMS)]
    model = add_lora(tiny_llama(0), seed=0)
    lm = LMRecommender(model, CharTokenizer(), titles, most_popular(stats), temperature=temperature)
    return lm.greedy()


def loop_log(n_users: int = 30, m: int = 60) -> LoopLog:
    """A feedback loop's log standing in for lesson 10's (random shows and clicks)."""
    g = torch.Generator().manual_seed(2)
    return LoopLog(
        round=torch.zeros(m, dtype=torch.long),
        user=torch.randint(n_users, (m,), generator=g),
        step=torch.zeros(m, dtype=torch.long),
        item=torch.randint(N_ITEMS, (m,), generator=g),
        click=torch.rand(m, generator=g) < 0.5,
        rating=torch.zeros(m),
    )


def loop_policy(recommender) -> Policy:
    """A lesson 10 recommender retrained on ``loop_log``, serving."""
    recommender.fit(loop_log())
    return recommender.policy()


def text_features() -> torch.Tensor:
    return torch.randn(N_ITEMS, 6, generator=torch.Generator().manual_seed(4))


def non_oracles(stats) -> dict[str, callable]:
    """Every non-oracle policy of the course, made fresh (random draws repeat per seed)."""
    shown = torch.arange(N_ITEMS).repeat_interleave(torch.arange(1, N_ITEMS + 1))  # i: i + 1 times
    first = torch.cat([torch.tensor([True]), shown[1:] != shown[:-1]])  # one click per item
    return {
        "click-through": lambda: click_through_recommender(shown, first.float(), N_ITEMS),
        "MF + click-through": lambda: interleave(
            [mf_recommender(recommender_mf()), most_popular(stats)]
        ),
        "LM re-ranker": lambda: lm_re_ranker(stats),
        "random": lambda: random_policy(N_ITEMS, seed=3),
        "most popular": lambda: most_popular(stats),
        "population planner": lambda: population_planner(stats),
        "DQN": dqn_policy,
        "DQN, knowing the user": lambda: dqn_policy(recommender_mf().users.weight),
        "MF recommender": lambda: mf_recommender(recommender_mf()),
        "PPO": lambda: ppo_policy(greedy=True),
        "PPO, sampled": lambda: ppo_policy(greedy=False),
        "most popular in the loop": lambda: loop_policy(
            PopularityRecommender(N_ITEMS, prior_counts=stats.count)
        ),
        "MF in the loop, ε-greedy": lambda: loop_policy(
            MFLoopRecommender(recommender_mf(), epsilon=0.5, epochs=1)
        ),
        "LinUCB": lambda: loop_policy(BanditRecommender(LinUCB(text_features(), 30))),
        "linear Thompson": lambda: loop_policy(
            BanditRecommender(LinearThompson(text_features(), 30, seed=1))
        ),
        "linear ε-greedy": lambda: loop_policy(
            BanditRecommender(EpsilonGreedyLinear(text_features(), 30, epsilon=0.5))
        ),
    }


def played_sim(world, steps=4):
    config = SimulatorConfig(horizon=20, observe_user=True)
    sim = UserSimulator(world, config, batch_size=16, device="cpu")
    obs = sim.reset(seed=0)
    for t in range(steps):
        obs, *_ = sim.step(torch.arange(16) % N_ITEMS + t)
    return sim, obs


def perturb_hidden_state(sim: UserSimulator) -> None:
    g = torch.Generator().manual_seed(9)
    sim.user_vectors = torch.randn(sim.user_vectors.shape, generator=g)
    sim.satiation = 3 * torch.rand(sim.satiation.shape, generator=g)
    sim.budget = 10 * torch.rand(sim.budget.shape, generator=g)
    world = sim.world
    world.user_vectors = torch.randn(world.user_vectors.shape, generator=g)
    world.item_quality = torch.rand(world.item_quality.shape, generator=g)
    world.item_vectors = torch.randn(world.item_vectors.shape, generator=g)
    world.clickbait = world.clickbait[torch.randperm(N_ITEMS, generator=g)]
    world.popularity = torch.rand(world.popularity.shape, generator=g)


def test_no_non_oracle_action_depends_on_the_hidden_state(world, stats):
    sim, obs = played_sim(world)
    before = {name: make()(obs) for name, make in non_oracles(stats).items()}
    oracles_before = {"greedy": greedy_oracle(sim)(obs), "planner": oracle_planner(sim)(obs)}
    perturb_hidden_state(sim)
    after = sim.observe()  # what the agent sees: unchanged, key by key
    assert after.keys() == obs.keys() and all(torch.equal(after[k], obs[k]) for k in obs)
    for name, make in non_oracles(stats).items():
        policy = make()
        assert not policy.oracle
        assert torch.equal(policy(sim.observe()), before[name]), name
    # ... while the oracles, which read it on purpose, do change (the perturbation matters)
    assert not torch.equal(greedy_oracle(sim)(obs), oracles_before["greedy"])
    assert not torch.equal(oracle_planner(sim)(obs), oracles_before["planner"])
    assert greedy_oracle(sim).oracle and oracle_planner(sim).oracle


def test_every_policy_avoids_the_session_log_and_ranks_valid_items(world, stats):
    sim, obs = played_sim(world)
    factories = non_oracles(stats)
    factories |= {"greedy": lambda: greedy_oracle(sim), "planner": lambda: oracle_planner(sim)}
    logged = torch.zeros(16, N_ITEMS, dtype=torch.bool)
    logged[torch.arange(16)[:, None], obs["items"][:, -4:]] = True
    for name, make in factories.items():
        actions = make()(obs)
        assert actions.shape == (16,) and actions.dtype == torch.long, name
        assert not logged[torch.arange(16), actions].any(), name
        top = make().rank(obs, 5)  # a fresh copy: the random policy draws the same scores
        assert top.shape == (16, 5) and torch.equal(top[:, 0], actions), name
        assert not logged.gather(1, top).any(), name
        assert (top.sort(1).values.diff(1) > 0).all(), name  # five distinct items


def test_most_popular_and_population_planner_follow_their_rules(world, stats):
    sim, obs = played_sim(world, steps=1)
    unshown_count = stats.count.masked_fill(obs["items"][:, -1:] == torch.arange(N_ITEMS), -1)
    assert torch.equal(most_popular(stats)(obs), unshown_count.argmax(1))
    chosen = population_planner(stats, min_rating=3.0, recent_steps=1)(obs)
    # the most popular unshown item rated >= 3 whose genres avoid the last item's, if any
    good = (stats.mean_rating >= 3.0) & (obs["items"][:, -1:] != torch.arange(N_ITEMS))
    fresh = (world.genres @ world.genres[obs["items"][:, -1]].T).T == 0  # [B, N]
    preferred = torch.where((good & fresh).any(1, keepdim=True), good & fresh, good)
    expected = stats.count.masked_fill(~preferred, -1).argmax(1)
    assert torch.equal(chosen, expected)


def test_the_planner_without_rotation_and_bad_settings(world, stats):
    sim, obs = played_sim(world, steps=3)
    no_rotation = population_planner(stats, min_rating=1.0, recent_steps=0)
    # recent_steps=0 ranks by popularity alone (``[:, -0:]`` once meant every step)
    assert torch.equal(no_rotation(obs), most_popular(stats)(obs))
    with pytest.raises(ValueError, match="recent_steps must be >= 0"):
        population_planner(stats, recent_steps=-1)


def test_the_mf_recommender_scores_the_logged_in_user(world):
    sim, obs = played_sim(world, steps=2)
    mf = recommender_mf()
    expected = mf.score_all()[obs["user"][:, 0]]
    torch.testing.assert_close(mf_recommender(mf).score(obs), expected)
    unknown = obs | {"user": torch.full_like(obs["user"], -1)}
    torch.testing.assert_close(mf_recommender(mf).score(unknown)[0], mf.item_bias.detach())
    with pytest.raises(KeyError, match="observe_user=True"):
        mf_recommender(mf)({k: v for k, v in obs.items() if k != "user"})


def test_a_network_that_knows_the_user_reads_their_vector(world):
    sim, obs = played_sim(world, steps=2)
    mf = recommender_mf()
    q = dqn_policy(mf.users.weight).score
    other = obs | {"user": (obs["user"] + 1) % 30}
    assert not torch.allclose(q(obs), q(other))  # another user, another state
    blind = dqn_policy().score  # the same network without the user table ignores the id
    assert torch.allclose(blind(obs), blind(other))
    with pytest.raises(KeyError, match="observe_user=True"):
        q({k: v for k, v in obs.items() if k != "user"})
    with pytest.raises(ValueError, match="not one of the recommender's 30 known users"):
        q(obs | {"user": torch.full_like(obs["user"], 30)})


def test_users_split_into_tuning_and_evaluation_halves():
    tuning, evaluation = split_users(11, seed=3)
    assert len(tuning) == 5 and len(evaluation) == 6
    assert torch.equal(torch.cat([tuning, evaluation]).sort().values, torch.arange(11))
    drawn = draw_users(evaluation, 100, seed=0)
    assert set(drawn.tolist()) <= set(evaluation.tolist())
    assert torch.equal(drawn, draw_users(evaluation, 100, seed=0))
    with pytest.raises(ValueError, match="at least 2 users"):
        split_users(1)


def test_tune_rule_picks_the_best_setting_it_measured(world, stats):
    sim = UserSimulator(world, SimulatorConfig(horizon=20), batch_size=32, device="cpu")
    users = torch.arange(32) % world.n_users
    grid = {"min_rating": [1.0, 3.0, 4.5], "recent_steps": [0, 2]}
    best, table = tune_rule(
        lambda **kw: population_planner(stats, **kw), grid, sim, users=users, seed=4
    )
    assert len(table) == 6 and table["return"].is_monotonic_decreasing
    for _, row in table.iterrows():  # each row is that setting's mean return, measured again
        settings = {"min_rating": row["min_rating"], "recent_steps": int(row["recent_steps"])}
        again = evaluate_policy(sim, population_planner(stats, **settings), users=users, seed=4)
        assert again["return"].mean() == pytest.approx(row["return"])
    assert best == {
        "min_rating": table.loc[0, "min_rating"],
        "recent_steps": table.loc[0, "recent_steps"],
    }
    same, _ = tune_population_planner(stats, sim, users=users, seed=4, grid=grid)
    assert same == best
    with pytest.raises(ValueError, match="grid must name"):
        tune_rule(population_planner, {"min_rating": []}, sim, users=users, seed=0)


def test_allowed_restricts_and_bad_masks_are_clear_errors(world):
    sim, obs = played_sim(world, steps=0)
    allowed = torch.arange(N_ITEMS) % 4 == 0
    assert allowed[random_policy(N_ITEMS, allowed=allowed)(obs)].all()
    with pytest.raises(ValueError, match="bool tensor"):
        random_policy(N_ITEMS, allowed=torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one item"):
        random_policy(N_ITEMS, allowed=torch.zeros(N_ITEMS, dtype=torch.bool))


def test_random_policy_repeats_with_its_seed(world):
    _, obs = played_sim(world)
    assert torch.equal(random_policy(N_ITEMS, seed=1)(obs), random_policy(N_ITEMS, seed=1)(obs))
    assert not torch.equal(random_policy(N_ITEMS, seed=1)(obs), random_policy(N_ITEMS, seed=2)(obs))


def test_the_recommender_computes_its_knowledge_from_the_training_split_only(atomic_dir):
    """Change every test-split rating: reality changes, the recommender's knowledge must not."""
    data = load_movielens_100k(atomic_dir)
    test_keys = set(zip(data.test["user"], data.test["item"]))
    changed = data.ratings.copy()
    in_test = [(u, i) in test_keys for u, i in zip(changed["user"], changed["item"])]
    changed.loc[in_test, "rating"] = 6 - changed.loc[in_test, "rating"]
    changed["positive"] = changed["rating"] >= 4
    other = dataclasses.replace(data, ratings=changed)
    assert other.test["rating"].tolist() != data.test["rating"].tolist()
    assert other.train.equals(data.train)
    for a, b in zip(vars(catalogue_stats(data)).values(), vars(catalogue_stats(other)).values()):
        assert torch.equal(a, b)
    options = dict(mf_dim=4, epochs=2)
    assert torch.equal(item_features(data, **options), item_features(other, **options))
    assert torch.equal(user_past(data), user_past(other))  # lesson 09's prompts: train only
    world_options = dict(dim=4, epochs=2, n_cohorts=2, progress=False, cache_dir=None)
    reality, changed_reality = (
        build_world(data, **world_options),
        build_world(other, **world_options),
    )
    assert not torch.equal(reality.item_quality, changed_reality.item_quality)


NON_ORACLES = {
    "click_through_recommender",
    "interleave",
    "LMRecommender",
    "add_lora",
    "session_text",
    "user_past",
    "random_policy",
    "most_popular",
    "population_planner",
    "mf_recommender",
    "catalogue_stats",
    "item_features",
    "fit_recommender_mf",
    "RecQNetwork",
    "ItemTable",
    "DQN",
    "SessionPolicy",
    "catalogue_vectors",
    "RL2Network",
    "RL2Agent",
    "AdaptingAgent",
    "RecActorCritic",
    "PPO",
    "Policy",
    "softmax_policy",
    "epsilon_greedy",
    "mixture",
    "recent_history",
    "observation_from_history",
    "LogPolicyNetwork",
    "LogREINFORCE",
    "reduce_features",
    "LinearBandit",
    "LinUCB",
    "LinearThompson",
    "EpsilonGreedyLinear",
    "BanditRecommender",
    "MFLoopRecommender",
    "PopularityRecommender",
    "RandomRecommender",
    "StaticRecommender",
    "far_from_mean",
}
HIDDEN_NAMES = {
    *("world", "sim", "evaluator", "validation", "fitted", "one", "everyone", "logger_sim"),
    "training_world",
}  # simulators, worlds


def _hidden_reads(node: ast.AST) -> list[str]:
    """Names of simulators or worlds an expression reads, other than for the catalogue size."""
    attributes = [a for a in ast.walk(node) if isinstance(a, ast.Attribute)]
    sizes = {id(a.value) for a in attributes if a.attr == "n_items"}
    names = (n for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in HIDDEN_NAMES)
    return [n.id for n in names if id(n) not in sizes]


@pytest.mark.parametrize("path", sorted(ROOT.glob("notebooks/*.ipynb")), ids=lambda p: p.name)
def test_lessons_build_non_oracle_policies_without_the_simulator(path):
    """A lesson must not hand a non-oracle policy (or the recommender's features) a world or a
    simulator: only the catalogue's size may come from there."""
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(cell["source"]))
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            name = getattr(call.func, "id", getattr(call.func, "attr", None))
            if name in NON_ORACLES:
                for argument in [*call.args, *(k.value for k in call.keywords)]:
                    reads = _hidden_reads(argument)
                    assert not reads, f"{path.name}: {name}(...) reads {reads}: {ast.unparse(call)}"


def test_the_lesson_check_catches_a_world_handed_to_a_policy():
    source = "p = most_popular(CatalogueStats(count=world.popularity, mean_rating=m, genres=g))"
    leaky = ast.parse(source + "\nr = random_policy(world.n_items)")
    calls = {getattr(c.func, "id", None): c for c in ast.walk(leaky) if isinstance(c, ast.Call)}
    assert _hidden_reads(calls["CatalogueStats"].keywords[0].value) == ["world"]
    assert _hidden_reads(calls["random_policy"].args[0]) == []
