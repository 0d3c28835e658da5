"""ipywidgets explorers: knobs a learner can turn."""

from __future__ import annotations

import html

import ipywidgets as widgets
import matplotlib.pyplot as plt
import pandas as pd
import torch

from recrl_lib.agents.loop_recommenders import MFLoopRecommender
from recrl_lib.encoders.text import nearest_neighbours
from recrl_lib.evaluation.feedback_loop import run_feedback_loop
from recrl_lib.plotting import clipped_objective


def neighbour_table(titles: list[str], vectors: torch.Tensor, query: int, k: int = 8) -> str:
    """HTML table of the k items most cosine-similar to item ``query``."""
    idx, sim = nearest_neighbours(vectors, query, k)
    rows = "".join(
        f"<tr><td>{s:.3f}</td><td>{html.escape(titles[i])}</td></tr>"
        for i, s in zip(idx.tolist(), sim.tolist())
    )
    return (
        f"<b>{html.escape(titles[query])}</b><table><tr><th>cosine</th><th>neighbour</th></tr>"
        f"{rows}</table>"
    )


def neighbour_explorer(titles: list[str], vectors: torch.Tensor, k: int = 8) -> widgets.VBox:
    """Type or pick a title; see its k nearest neighbours. ``box.children = (picker, k, table)``."""
    index = {t: i for i, t in enumerate(titles)}
    picker = widgets.Combobox(
        options=sorted(index),
        value=titles[0],
        placeholder="type a title",
        description="Item",
        ensure_option=True,
        layout=widgets.Layout(width="60%"),
    )
    k_slider = widgets.IntSlider(value=k, min=1, max=30, description="k")
    table = widgets.HTML()

    def update(_=None):
        if picker.value in index:
            table.value = neighbour_table(titles, vectors, index[picker.value], k_slider.value)

    picker.observe(update, names="value")
    k_slider.observe(update, names="value")
    update()
    return widgets.VBox([picker, k_slider, table])


def clip_summary(advantage: float, clip_coef: float) -> str:
    """Where the clipped objective stops moving, in words."""
    if advantage > 0:
        return (
            f"A > 0: raising π(a|s) pays until r = {1 + clip_coef:.2f}; past it the objective "
            "is flat (zero gradient). Below 1 it is never clipped: a step that lowered a good "
            "action is always pulled back."
        )
    if advantage < 0:
        return (
            f"A < 0: lowering π(a|s) pays until r = {1 - clip_coef:.2f}; below it the objective "
            "is flat (zero gradient). Above 1 it is never clipped: a step that raised a bad "
            "action is always pulled back."
        )
    return "A = 0: the objective is 0 whatever the ratio; this step teaches nothing."


def clipped_objective_explorer(advantage: float = 1.0, clip_coef: float = 0.2) -> widgets.VBox:
    """Turn A and ε; see PPO's clipped objective against the ratio.
    ``box.children = (advantage, epsilon, summary, plot)``."""
    a_slider = widgets.FloatSlider(value=advantage, min=-2, max=2, step=0.1, description="A")
    eps_slider = widgets.FloatSlider(value=clip_coef, min=0.05, max=0.5, step=0.05, description="ε")
    summary, plot = widgets.HTML(), widgets.Output()

    def update(_=None):
        summary.value = clip_summary(a_slider.value, eps_slider.value)
        with plot:
            plot.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 3.2))
            clipped_objective(a_slider.value, eps_slider.value, ax=ax)
            plt.show()

    a_slider.observe(update, names="value")
    eps_slider.observe(update, names="value")
    update()
    return widgets.VBox([a_slider, eps_slider, summary, plot])


def feedback_loop_explorer(
    world, mf, users: torch.Tensor, *, config=None, popularity=None, seed: int = 0
) -> widgets.VBox:
    """Greedy MF against ε-greedy MF in lesson 10's loop, for the ε and the number of rounds a
    learner picks: press Run to see clicks per session, the Gini of exposure and catalogue
    coverage per round. ``box.children = (epsilon, rounds, run, summary, plot)``; the summary
    is a table of the last round (``box.last`` holds the runs' tables)."""
    eps_slider = widgets.FloatSlider(value=0.2, min=0.0, max=1.0, step=0.05, description="ε")
    rounds_slider = widgets.IntSlider(value=6, min=2, max=20, description="rounds")
    run_button = widgets.Button(description="Run", button_style="primary")
    summary, plot = widgets.HTML(), widgets.Output()
    box = widgets.VBox([eps_slider, rounds_slider, run_button, summary, plot])

    def run(_=None):
        runs = {}
        for name, epsilon in (("greedy", 0.0), (f"ε = {eps_slider.value:g}", eps_slider.value)):
            table, _ = run_feedback_loop(
                world,
                MFLoopRecommender(mf, epsilon=epsilon, seed=seed),
                users=users,
                rounds=rounds_slider.value,
                config=config,
                popularity=popularity,
                seed=seed,
            )
            runs[name] = table
        box.last = runs
        measures = ["clicks_per_session", "gini_exposure", "coverage"]
        last = {name: table[measures].iloc[-1] for name, table in runs.items()}
        summary.value = "<b>last round</b>" + pd.DataFrame(last).T.round(3).to_html()
        with plot:
            plot.clear_output(wait=True)
            fig, axes = plt.subplots(1, 3, figsize=(12, 3))
            for ax, measure in zip(axes, measures):
                for name, table in runs.items():
                    ax.plot(table["round"], table[measure], marker="o", label=name)
                ax.set(xlabel="round (0: random start-up)", title=measure.replace("_", " "))
            axes[0].legend()
            plt.tight_layout()
            plt.show()

    run_button.on_click(run)
    run()
    return box
