"""The neighbour explorer reacts to its knobs."""

import torch

from recrl_lib.widgets import neighbour_explorer


def test_explorer_updates_on_pick_and_k():
    titles = ["A", "B", "C", "D"]
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    picker, k, table = neighbour_explorer(titles, vectors, k=1).children
    assert "<b>A</b>" in table.value and "B" in table.value and ">C<" not in table.value
    picker.value = "C"
    assert "<b>C</b>" in table.value and ">D<" in table.value
    k.value = 3
    assert table.value.count("<tr>") == 4  # header + 3 neighbours


def test_clipped_objective_plot_is_the_librarys_surrogate_and_the_explorer_reacts():
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    from recrl_lib.plotting import clipped_objective
    from recrl_lib.widgets import clipped_objective_explorer

    ax = clipped_objective(advantage=-1.5, clip_coef=0.2)
    ratio, objective = (np.asarray(a) for a in ax.lines[1].get_data())
    # independent: A < 0 -> max(r, 1 − ε)·A
    np.testing.assert_allclose(objective, np.maximum(ratio, 0.8) * -1.5, rtol=1e-6)
    a, eps, summary, _ = clipped_objective_explorer(advantage=1.0, clip_coef=0.2).children
    assert "r = 1.20" in summary.value
    eps.value = 0.3
    assert "r = 1.30" in summary.value
    a.value = -1.0
    assert "A < 0" in summary.value and "r = 0.70" in summary.value


def test_the_feedback_loop_explorer_runs_greedy_and_epsilon_greedy_for_the_knobs():
    import matplotlib

    matplotlib.use("Agg")
    from recrl_lib.encoders import ItemTable, MatrixFactorization
    from recrl_lib.envs import World
    from recrl_lib.widgets import feedback_loop_explorer

    world = World.random(n_users=20, n_items=30, seed=0)
    mf = MatrixFactorization(world.n_users, ItemTable(world.n_items, dim=4))
    box = feedback_loop_explorer(world, mf, torch.arange(12))
    epsilon, rounds, run, summary, _ = box.children
    assert set(box.last) == {"greedy", "ε = 0.2"} and len(box.last["greedy"]) == 6
    assert "last round" in summary.value
    epsilon.value, rounds.value = 1.0, 3
    run.click()
    assert set(box.last) == {"greedy", "ε = 1"} and len(box.last["ε = 1"]) == 3
