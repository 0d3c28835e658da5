"""ipywidgets explorers: knobs a learner can turn."""

from __future__ import annotations

import html

import ipywidgets as widgets
import torch

from recrl_lib.encoders.text import nearest_neighbours


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
