"""ipywidgets explorers: knobs a learner can turn."""

from __future__ import annotations

import html

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from recrl_lib.encoders.text import nearest_neighbours
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
