"""Lesson 10's feedback loop: its measures by hand, the Pólya urn against theory, the loop's
bookkeeping, and the recommenders it retrains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recrl_lib.agents import (
    BanditRecommender,
    LinearThompson,
    LinUCB,
    LoopLog,
    MFLoopRecommender,
    OracleRecommender,
    PopularityRecommender,
    RandomRecommender,
    StaticRecommender,
    most_popular,
)
from recrl_lib.encoders import CatalogueStats, ItemTable, MatrixFactorization
from recrl_lib.envs import SimulatorConfig, World
from recrl_lib.evaluation import (
    clicks_by_user,
    far_from_mean,
    gini,
    gini_of_exposure,
    homogenisation,
    mean_popularity,
    polya_share_variance,
    polya_urn,
    round_measures,
    run_feedback_loop,
)

# ----------------------------------------------------------------------------- measures


def test_gini_by_hand():
    # sorted x = [0, 0, 1, 2]: Σ (2i − n − 1) x_(i) = 1·1 + 3·2 = 7, / (n Σx) = 4 · 3
    assert gini(torch.tensor([2, 0, 1, 0])) == pytest.approx(7 / 12)
    # ties: [1, 1, 2, 2]: (−3 − 1 + 2 + 6) / (4 · 6) = 1/6 = Σ|x_i − x_j| / (2 n² mean) = 8 / 48
    assert gini(np.array([2.0, 1.0, 2.0, 1.0])) == pytest.approx(1 / 6)
    assert gini([0, 0, 0, 5]) == pytest.approx(3 / 4)  # one non-zero: (n − 1) / n
    assert gini(torch.full((7,), 3.0)) == 0.0  # all equal
    assert gini([4]) == 0.0
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 9, (30,), generator=g).float()
    assert gini(x) == pytest.approx(gini(x[torch.randperm(30, generator=g)]))  # order-free
    pairs = (x[:, None] - x[None, :]).abs().sum() / (2 * 30**2 * x.mean())
    assert gini(x) == pytest.approx(pairs.item())
    ranked = torch.tensor([[3, 2], [3, -1]])  # exposure per item [0, 0, 1, 2]
    assert gini_of_exposure(ranked, 4) == gini(torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="all zero"):
        gini(torch.zeros(4))
    with pytest.raises(ValueError, match=">= 0"):
        gini([1.0, -1.0])
    with pytest.raises(ValueError, match="1-D"):
        gini(torch.ones(2, 2))


def test_mean_popularity_by_hand():
    popularity = torch.tensor([10.0, 20.0, 30.0])
    assert mean_popularity(torch.tensor([[0, 2], [2, -1]]), popularity) == pytest.approx(70 / 3)
    assert mean_popularity(torch.tensor([1]), popularity) == 20.0
    with pytest.raises(ValueError, match="no item was shown"):
        mean_popularity(torch.tensor([-1, -1]), popularity)
    with pytest.raises(ValueError, match="beyond the 3 items"):
        mean_popularity(torch.tensor([3]), popularity)
    with pytest.raises(ValueError, match="long item ids"):
        mean_popularity(torch.tensor([1.0]), popularity)


def test_homogenisation_by_hand():
    def sets(rows):
        return torch.tensor(rows, dtype=torch.bool)

    measured = sets([[1, 1, 0], [1, 0, 0]])  # Jaccard 1/2
    oracle = sets([[1, 1, 0], [0, 1, 1]])  # Jaccard 1/3
    assert homogenisation(measured, oracle) == pytest.approx(1.5)
    assert homogenisation(measured, oracle, kind="difference") == pytest.approx(1 / 6)
    assert homogenisation(oracle, oracle) == 1.0
    apart = sets([[1, 0, 0], [0, 1, 0]])  # Jaccard 0
    assert homogenisation(measured, apart, kind="difference") == pytest.approx(0.5)
    with pytest.raises(ValueError, match="kind='difference'"):
        homogenisation(measured, apart)
    with pytest.raises(ValueError, match="row for row"):
        homogenisation(measured, sets([[1, 0, 0]] * 3))
    with pytest.raises(ValueError, match="kind must be"):
        homogenisation(measured, oracle, kind="log")


def handmade_log() -> LoopLog:
    """One round: user 0 sees items 0 (click, 2 stars), 1; user 1 sees 0 (click, 4), 2
    (click, 4); user 2 sees 3."""
    return LoopLog(
        round=torch.zeros(5, dtype=torch.long),
        user=torch.tensor([0, 0, 1, 1, 2]),
        step=torch.tensor([0, 1, 0, 1, 0]),
        item=torch.tensor([0, 1, 0, 2, 3]),
        click=torch.tensor([True, False, True, True, False]),
        rating=torch.tensor([2.0, 0.0, 4.0, 4.0, 0.0]),
    )


def test_round_measures_by_hand():
    popularity = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0])
    m = round_measures(handmade_log(), 5, popularity=popularity)
    assert (m["sessions"], m["steps"], m["clicks"]) == (3, 5, 3)
    # shown [2, 1, 1, 1, 0] -> sorted [0, 1, 1, 1, 2]: (−2 + 0 + 2 + 8) / (5 · 5)
    assert m["gini_exposure"] == pytest.approx(8 / 25)
    # clicked [2, 0, 1, 0, 0] -> sorted [0, 0, 0, 1, 2]: (2 + 8) / (5 · 3)
    assert m["gini_consumption"] == pytest.approx(2 / 3)
    assert m["coverage"] == pytest.approx(4 / 5)
    assert m["mean_popularity"] == pytest.approx((10 + 20 + 10 + 30 + 40) / 5)
    # clicked sets {0}, {0, 2}, {}: the session without a click is left out -> 1/2
    assert m["jaccard"] == pytest.approx(1 / 2)
    assert m["clicks_per_session"] == pytest.approx(1.0)
    assert m["mean_rating"] == pytest.approx((2 + 4) / 2)  # user 2 clicked nothing: left out
    # over the 4 available items only: shown [2, 1, 1, 1] -> (−3 − 1 + 1 + 6) / (4 · 5)
    available = torch.tensor([True, True, True, True, False])
    m = round_measures(handmade_log(), 5, available=available)
    assert m["gini_exposure"] == pytest.approx(3 / 20) and m["coverage"] == 1.0
    assert np.isnan(m["mean_popularity"])
    nothing = handmade_log().select(torch.tensor([False, True, False, False, True]))
    m = round_measures(nothing, 5)
    assert np.isnan(m["gini_consumption"]) and np.isnan(m["jaccard"])
    assert np.isnan(m["mean_rating"]) and m["clicks_per_session"] == 0.0
    with pytest.raises(ValueError, match="bool tensor"):
        round_measures(handmade_log(), 5, available=torch.ones(4, dtype=torch.bool))


# ----------------------------------------------------------------------------- Pólya urn


def per_run_variance(shares: np.ndarray) -> np.ndarray:
    """[runs]: Σ_i (S_i − 1/n)² / n of each run's final shares. The mean share is exactly 1/n
    and the items are exchangeable, so each value is an unbiased, independent estimate of
    Var S_i: their mean has a normal sampling distribution with the standard error below."""
    final = shares[:, -1]
    return ((final - 1 / final.shape[1]) ** 2).mean(1)


def assert_matches(values: np.ndarray, expected: float) -> None:
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - expected) < 4 * se, (values.mean(), expected, se)


def test_polya_urn_shares_match_the_dirichlet_theory():
    n, rounds, draws = 5, 40, 10  # T = 400 draws
    shares = polya_urn(n, rounds, draws, runs=4000, seed=0)
    assert shares.shape == (4000, 41, 5)
    np.testing.assert_allclose(shares.sum(2), 1.0)
    np.testing.assert_allclose(shares[:, 0], 0.2)
    v = per_run_variance(shares)
    assert_matches(v, polya_share_variance(n, 400))  # the exact variance after 400 draws
    # ... already close to the Dirichlet(1, ..., 1) limit: (n − 1) / (n² (n + 1)) = 4 / 150
    assert polya_share_variance(n) == pytest.approx(4 / 150)
    assert polya_share_variance(n, 400) == pytest.approx(4 / 150 * 400 / 405)
    # Dirichlet(1, ..., 1)'s coordinate is Beta(1, n − 1): variance ab / ((a + b)² (a + b + 1))
    assert polya_share_variance(n) == pytest.approx((n - 1) / (n**2 * (n + 1)))
    assert polya_share_variance(2, 1) == pytest.approx(1 / 36)  # (2/3, 1/3) or (1/3, 2/3)
    # uniform exploration breaks the loop: 1 + Multinomial(T, 1/n) over n + T
    uniform = per_run_variance(polya_urn(n, rounds, draws, explore=1.0, runs=4000, seed=1))
    assert_matches(uniform, 400 * (1 / n) * (1 - 1 / n) / (n + 400) ** 2)
    assert uniform.mean() < polya_share_variance(n) / 50
    some = per_run_variance(polya_urn(n, rounds, draws, explore=0.3, runs=1000, seed=2))
    assert uniform.mean() < some.mean() < v.mean()


def test_polya_urn_with_a_consumption_probability():
    from scipy import stats

    n, T, p = 4, 200, 0.5
    v = per_run_variance(polya_urn(n, 20, 10, consume_prob=p, runs=4000, seed=3))
    # K ~ Binomial(T, p) balls are added; given K, the urn is classic: E Var = Σ_k P(k) f(k)
    k = np.arange(T + 1)
    expected = sum(stats.binom.pmf(k, T, p) * np.array([polya_share_variance(n, j) for j in k]))
    assert_matches(v, expected)


def test_polya_urn_repeats_with_its_seed_and_checks_its_inputs():
    assert np.array_equal(polya_urn(3, 5, 2, seed=4), polya_urn(3, 5, 2, seed=4))
    assert not np.array_equal(polya_urn(3, 5, 2, seed=4), polya_urn(3, 5, 2, seed=5))
    with pytest.raises(ValueError, match="n_items must be an int >= 2"):
        polya_urn(1, 5, 2)
    with pytest.raises(ValueError, match="explore must be a probability"):
        polya_urn(3, 5, 2, explore=1.5)
    with pytest.raises(ValueError, match="draws_per_round must be an int >= 1"):
        polya_urn(3, 5, 0)


# ----------------------------------------------------------------------------- the loop

N_USERS, N_ITEMS = 40, 30


@pytest.fixture(scope="module")
def world():
    return World.random(n_users=N_USERS, n_items=N_ITEMS, seed=2)


def recommender_mf() -> MatrixFactorization:
    torch.manual_seed(1)
    return MatrixFactorization(N_USERS, ItemTable(N_ITEMS, dim=4))


def features() -> torch.Tensor:
    return torch.randn(N_ITEMS, 5, generator=torch.Generator().manual_seed(0))


RECOMMENDERS = {
    "random": lambda: RandomRecommender(N_ITEMS, seed=1),
    "most popular": lambda: PopularityRecommender(N_ITEMS, prior_counts=torch.arange(30.0)),
    "MF": lambda: MFLoopRecommender(recommender_mf(), epochs=2),
    "MF ε-greedy": lambda: MFLoopRecommender(recommender_mf(), epsilon=0.3, epochs=2),
    "LinUCB": lambda: BanditRecommender(LinUCB(features(), N_USERS)),
    "Thompson": lambda: BanditRecommender(LinearThompson(features(), N_USERS, seed=2)),
    "oracle": lambda: OracleRecommender(N_ITEMS),
    "oracle (click)": lambda: OracleRecommender(N_ITEMS, target="click"),
}
USERS = torch.arange(0, N_USERS, 2)  # 20 of the 40


def run(world, recommender, **options):
    settings = dict(users=USERS, rounds=4, startup_rounds=1, session_len=5, seed=0, device="cpu")
    return run_feedback_loop(world, recommender, **(settings | options))


def check_bookkeeping(log: LoopLog, table, users: torch.Tensor, rounds: int, session_len: int):
    frame = log.to_frame()
    sessions = frame.groupby(["round", "user"])
    # every user has exactly one session every round ...
    assert sessions.ngroups == rounds * len(users)
    for r in range(rounds):
        assert sorted(frame[frame["round"] == r]["user"].unique()) == sorted(users.tolist())
    # ... whose steps are 0, 1, ..., length − 1 (none lost, none twice), with no item twice
    for _, session in sessions:
        assert session["step"].tolist() == list(range(len(session)))
        assert 1 <= len(session) <= session_len
        assert session["item"].is_unique
    assert (frame["rating"][~frame["click"]] == 0).all()
    assert frame["rating"][frame["click"]].between(1, 5).all()
    everyone = table[table["users"] == "all"]
    assert everyone["steps"].sum() == len(log) == sessions.size().sum()
    assert (everyone["sessions"] == len(users)).all()
    assert everyone["clicks"].sum() == int(log.click.sum())


@pytest.mark.parametrize("name", RECOMMENDERS)
def test_the_loop_keeps_every_users_history_once_and_repeats_with_its_seed(world, name):
    table, log = run(world, RECOMMENDERS[name]())
    check_bookkeeping(log, table, USERS, 4, 5)
    assert table["round"].tolist() == [0, 1, 2, 3]
    assert table["phase"].tolist() == ["startup", "retrain", "retrain", "retrain"]
    assert (table["recommender"] == RECOMMENDERS[name]().name).all()
    again_table, again = run(world, RECOMMENDERS[name]())
    assert again.equals(log) and again_table.equals(table)
    _, other = run(world, RECOMMENDERS[name](), seed=1)
    assert not (len(other) == len(log) and other.equals(log))


def test_a_patient_user_runs_every_step_and_an_impatient_one_stops_early(world):
    patient = SimulatorConfig(budget_init=1000.0)
    table, log = run(world, PopularityRecommender(N_ITEMS), config=patient)
    assert len(log) == 4 * len(USERS) * 5  # log rows = Σ session lengths, all full
    impatient = SimulatorConfig(budget_init=1.0, miss_cost=1.0)
    table, log = run(world, PopularityRecommender(N_ITEMS), config=impatient, session_len=8)
    check_bookkeeping(log, table, USERS, 4, 8)
    assert len(log) < 4 * len(USERS) * 8  # some sessions ended before the last step


def test_startup_rounds_are_uniformly_random_whatever_the_recommender(world):
    from scipy import stats

    big = World.random(n_users=400, n_items=20, seed=3)
    users = torch.arange(400)
    options = dict(users=users, rounds=2, startup_rounds=2, session_len=1, seed=5, device="cpu")
    _, log = run_feedback_loop(big, OracleRecommender(20), **options)
    _, same = run_feedback_loop(big, PopularityRecommender(20), **options)
    assert log.equals(same)  # start-up does not depend on the recommender
    counts = torch.bincount(log.item, minlength=20).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3  # 800 uniform draws over 20 items
    # with a retrain round after it, the start-up round is still the same
    _, later = run_feedback_loop(big, OracleRecommender(20), **(options | {"startup_rounds": 1}))
    assert later.in_round(0).equals(log.in_round(0))
    assert not later.in_round(1).equals(log.in_round(1))


class Spy:
    """A non-oracle recommender that records what the loop gives it (and would take a
    simulator if one were offered)."""

    name, oracle = "spy", False

    def __init__(self):
        self.fits, self.attached = [], False
        self.inner = PopularityRecommender(N_ITEMS)

    def attach(self, sim):
        self.attached = True

    def fit(self, log):
        self.fits.append(log)
        self.inner.fit(log)

    def policy(self):
        return self.inner.policy()


class SpyOracle(OracleRecommender):
    """The oracle, recording the simulator's hidden user vectors each time it is asked to
    serve (the end of the previous round: what carries over)."""

    def __init__(self):
        super().__init__(N_ITEMS)
        self.vectors = []

    def policy(self):
        self.vectors.append(self.sim.user_vectors.clone())
        return super().policy()


def test_fit_sees_the_whole_log_so_far_and_only_oracles_get_the_simulator(world):
    spy = Spy()
    _, log = run(world, spy, rounds=5, startup_rounds=2)
    assert not spy.attached
    assert len(spy.fits) == 3  # before each retrain round
    for r, seen in zip((2, 3, 4), spy.fits):
        assert seen.equals(log.select(log.round < r))
    spy = Spy()
    _, log = run(world, spy, rounds=2, startup_rounds=0)
    assert len(spy.fits[0]) == 0  # no start-up: the first fit is on an empty log


def test_hidden_vectors_and_their_drift_carry_over_from_round_to_round(world):
    oracle = SpyOracle()
    config = SimulatorConfig(drift=0.3, budget_init=1000.0)
    _, log = run(world, oracle, rounds=4, startup_rounds=1, config=config)
    start = world.user_vectors[USERS]
    before = [start, *oracle.vectors]  # the vectors at the start of rounds 0, 1, 2, 3
    for r in range(3):
        clicked = torch.zeros(N_USERS, dtype=torch.bool)
        part = log.in_round(r)
        clicked[part.user[part.click]] = True
        moved = (before[r + 1] != before[r]).any(1)
        assert torch.equal(moved, clicked[USERS]), r  # drift where, and only where, a click was
    assert (before[3] != start).any(1).sum() > len(USERS) // 2  # not reset to the world's


def test_new_items_are_never_shown_before_they_arrive(world):
    arrival = torch.zeros(N_ITEMS, dtype=torch.long)
    arrival[20:] = torch.tensor([1, 1, 2, 2, 2, 3, 3, 3, 3, 3])
    table, log = run(world, RandomRecommender(N_ITEMS), new_items=arrival, startup_rounds=4)
    first_shown = torch.full((N_ITEMS,), 99).scatter_reduce(0, log.item, log.round, "amin")
    assert (first_shown >= arrival).all()
    assert (first_shown[20:] < 99).all()  # and they do get shown once they are there
    assert table["coverage"].iloc[0] == pytest.approx(len(log.in_round(0).item.unique()) / 20)


def test_group_rows_measure_the_group_alone(world):
    group = torch.zeros(N_USERS, dtype=torch.bool)
    group[:10] = True  # users 0, 2, ..., 8 of the loop
    popularity = torch.arange(30.0)
    table, log = run(world, RandomRecommender(N_ITEMS), group=group, popularity=popularity)
    assert table["users"].tolist() == ["all", "group"] * 4
    rows = table[(table["users"] == "group") & (table["round"] == 2)].iloc[0]
    part = log.in_round(2)
    expected = round_measures(part.select(part.user < 10), N_ITEMS, popularity=popularity)
    assert {k: rows[k] for k in expected} == pytest.approx(expected, nan_ok=True)
    assert rows["sessions"] == 5


def test_bad_inputs_are_clear_errors(world):
    rec = PopularityRecommender(N_ITEMS)
    with pytest.raises(ValueError, match="must be distinct"):
        run(world, rec, users=torch.tensor([1, 1, 2]))
    with pytest.raises(ValueError, match="user ids in 0..39"):
        run(world, rec, users=torch.tensor([1, 40]))
    with pytest.raises(ValueError, match="user ids"):
        run(world, rec, users=torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="rounds must be an int >= 1"):
        run(world, rec, rounds=0)
    with pytest.raises(ValueError, match="startup_rounds must be in 0..rounds=4"):
        run(world, rec, startup_rounds=5)
    with pytest.raises(ValueError, match="fewer than session_len=5"):
        run(world, rec, new_items=torch.tensor([0] * 3 + [1] * 27))
    with pytest.raises(ValueError, match="round numbers >= 0"):
        run(world, rec, new_items=torch.zeros(N_ITEMS))
    with pytest.raises(ValueError, match="group must be a \\[40\\] bool mask"):
        run(world, rec, group=torch.ones(20, dtype=torch.bool))
    with pytest.raises(ValueError, match="no user of the loop is in the group"):
        run(world, rec, group=torch.arange(N_USERS) % 2 == 1)
    with pytest.raises(ValueError, match="popularity must be"):
        run(world, rec, popularity=torch.ones(3))
    with pytest.raises(ValueError, match="ranks 10 items, the world 30"):
        run(world, PopularityRecommender(10))
    with pytest.raises(TypeError, match="LoopRecommender"):
        run(world, most_popular(CatalogueStats(torch.ones(30), torch.ones(30), world.genres)))


# ----------------------------------------------------------------------------- recommenders


def test_most_popular_counts_the_logs_clicks_on_top_of_its_prior():
    log = handmade_log()  # clicks: item 0 twice, item 2 once
    rec = PopularityRecommender(5, prior_counts=torch.tensor([0.0, 0, 0, 0, 1.5]))
    rec.fit(log)
    assert rec.counts.tolist() == [2.0, 0.0, 1.0, 0.0, 1.5]
    obs = {"items": torch.zeros(1, 1, dtype=torch.long), "mask": torch.zeros(1, 1).bool()}
    assert rec.policy().rank(obs, 3).tolist() == [[0, 4, 2]]
    with pytest.raises(ValueError, match="prior_counts must be"):
        PopularityRecommender(5, prior_counts=torch.ones(4))


def test_the_mf_refit_is_a_function_of_the_log_and_leaves_its_start_untouched():
    mf = recommender_mf()
    start = mf.score_all().clone()
    rec = MFLoopRecommender(mf, epochs=3)
    rec.fit(LoopLog.empty())
    assert torch.equal(rec.mf.score_all(), start)  # no click yet: the training-split model
    log = handmade_log()
    rec.fit(log)
    first = rec.mf.score_all().clone()
    rec.fit(log)
    assert torch.equal(rec.mf.score_all(), first)  # refit from the same start: same model
    assert not torch.equal(first, start) and torch.equal(mf.score_all(), start)
    with pytest.raises(ValueError, match="epsilon must be in"):
        MFLoopRecommender(mf, epsilon=2.0)


def test_a_bandit_in_the_loop_refits_on_the_whole_log():
    log = handmade_log()
    rec = BanditRecommender(LinUCB(torch.randn(5, 3), 3))
    rec.fit(log)
    rec.fit(log)  # forgets before refitting: the data count once
    fresh = LinUCB(rec.bandit.features[:, :3].clone(), 3)
    fresh.update(log.user, log.item, log.click.float())
    assert torch.equal(rec.bandit.A, fresh.A) and torch.equal(rec.bandit.b, fresh.b)
    assert rec.bandit.n_observations == 5


def test_static_and_oracle_recommenders(world):
    stats = CatalogueStats(torch.arange(30.0), torch.ones(30), world.genres)
    static = StaticRecommender(most_popular(stats))
    table, log = run(world, static, startup_rounds=0, rounds=1)
    assert (log.item[log.step == 0] == 29).all()  # the most rated item first, for everyone
    with pytest.raises(ValueError, match="attach\\(sim\\) first"):
        OracleRecommender(N_ITEMS).policy()
    with pytest.raises(ValueError, match="target must be"):
        OracleRecommender(N_ITEMS, target="quality")
    # the affinity oracle serves each user's best unshown item by hidden affinity
    oracle = SpyOracle()
    config = SimulatorConfig(drift=0.0)
    _, log = run(world, oracle, startup_rounds=0, rounds=1, config=config)
    best = world.affinity_all(world.user_vectors[USERS]).argmax(1)
    assert torch.equal(log.item[log.step == 0], best)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["random", "most popular", "MF ε-greedy", "Thompson", "oracle"])
def test_the_loop_runs_on_the_gpu(world, name):
    table, log = run(world, RECOMMENDERS[name](), device="cuda")
    assert log.device.type == "cuda"
    check_bookkeeping(log.to("cpu"), table, USERS, 4, 5)
    if name != "MF ε-greedy":  # BPR's backward on a GPU adds in no fixed order
        assert run(world, RECOMMENDERS[name](), device="cuda")[1].equals(log)


def test_the_minority_is_the_users_whose_taste_points_furthest_from_the_average():
    # four users point roughly along (1, 0); one, short, points the other way; a long vector
    # along the average is not unusual however long it is
    vectors = torch.tensor([[1.0, 0.1], [2.0, -0.1], [9.0, 0.0], [1.0, 0.3], [-0.5, 0.2]])
    group = far_from_mean(vectors, quantile=0.75)
    assert group.tolist() == [False, False, False, False, True]
    # within strata: each stratum has its own most unusual member. The average direction is
    # about 10° above the x axis (user 4 pulls it up), so in stratum {2, 3} user 2 (0°) is
    # further from it than user 3 (17°)
    strata = torch.tensor([0, 0, 1, 1, 0])
    within = far_from_mean(vectors, quantile=0.6, strata=strata)
    assert within.tolist() == [False, False, True, False, True]
    with pytest.raises(ValueError, match="quantile"):
        far_from_mean(vectors, quantile=1.0)


def test_clicks_by_user_counts_each_users_clicks_per_round():
    log = LoopLog(
        round=torch.tensor([0, 0, 0, 1, 1, 2]),
        user=torch.tensor([7, 7, 3, 3, 7, 3]),
        step=torch.tensor([0, 1, 0, 0, 0, 1]),
        item=torch.tensor([1, 2, 1, 4, 5, 6]),
        click=torch.tensor([True, True, False, True, False, True]),
        rating=torch.tensor([4.0, 3.0, 0.0, 5.0, 0.0, 2.0]),
    )
    table = clicks_by_user(log, torch.tensor([3, 7]), 3)
    assert table.tolist() == [[0.0, 1.0, 1.0], [2.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="outside"):
        clicks_by_user(log, torch.tensor([3]), 3)


def test_consumed_items_are_not_shown_again_and_the_last_round_can_exploit():
    world = World.random(n_users=12, n_items=40, seed=3)
    users = torch.arange(10)
    mf = MatrixFactorization(world.n_users, ItemTable(world.n_items, dim=4))
    recommender = MFLoopRecommender(mf, epsilon=1.0, epochs=1, seed=0)  # explores every step
    table, log = run_feedback_loop(
        world,
        recommender,
        users=users,
        rounds=4,
        session_len=5,
        seed=0,
        device="cpu",
        exclude_consumed=True,
        exploit_last=True,
    )
    clicked = log.select(log.click)
    pairs = clicked.user * world.n_items + clicked.item
    assert len(pairs.unique()) == len(pairs)  # no user clicked one item twice across rounds
    assert table["phase"].tolist() == ["startup", "retrain", "retrain", "exploit"]
    # the exploit round serves the MF fitted on rounds 0-2 greedily (its exploration off): each
    # user's first item is the model's best among the items that user had not clicked before
    before = log.select(log.round < 3)
    seen = torch.zeros(world.n_users, world.n_items, dtype=torch.bool)
    seen[before.user[before.click], before.item[before.click]] = True
    scores = recommender.mf.score_all()[: world.n_users].masked_fill(seen, -float("inf"))
    first = log.select((log.round == 3) & (log.step == 0))
    assert torch.equal(first.item, scores[first.user].argmax(1))
