"""Matplotlib figures the lessons share (axes labelled, spread shown)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from recrl_lib.agents.ppo import clipped_surrogate
from recrl_lib.evaluation import seed_band


def pca_2d(vectors: torch.Tensor) -> np.ndarray:
    """[N, D] -> [N, 2]: the projection on the two principal components."""
    centred = vectors.float().cpu() - vectors.float().cpu().mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ v[:2].T).numpy()


def embedding_scatter(vectors: torch.Tensor, labels: list[str], *, ax=None, title: str = ""):
    """PCA of ``vectors`` coloured by ``labels`` (one colour per distinct label)."""
    ax = ax or plt.subplots(figsize=(7, 5))[1]
    points = pca_2d(vectors)
    for label in sorted(set(labels), key=labels.count, reverse=True):
        keep = np.array([x == label for x in labels])
        ax.scatter(
            points[keep, 0], points[keep, 1], s=8, alpha=0.7, label=f"{label} ({keep.sum()})"
        )
    ax.set(xlabel="principal component 1", ylabel="principal component 2", title=title)
    ax.legend(fontsize=7, markerscale=2, ncol=2, loc="best")
    return ax


def bars_with_ci(names, means, lows, highs, *, ax=None, ylabel: str = "", title: str = ""):
    """Bar chart of means with asymmetric error bars [low, high] (e.g. 95% CIs)."""
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    means, lows, highs = map(np.asarray, (means, lows, highs))
    ax.bar(names, means, yerr=[means - lows, highs - means], capsize=6, color="tab:blue", alpha=0.8)
    ax.set(ylabel=ylabel, title=title)
    return ax


def learning_curves(curves: dict, *, ax=None, xlabel: str = "", ylabel: str = "", title: str = ""):
    """One line per name with its 95% band over seeds: ``curves[name] = (x [T], values [S, T])``."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for name, (x, values) in curves.items():
        mean, low, high = seed_band(values)
        (line,) = ax.plot(x, mean, label=f"{name} ({len(values)} seeds)")
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return ax


def clipped_objective(advantage: float, clip_coef: float, *, ax=None, max_ratio: float = 2.0):
    """PPO's per-step objective min(r A, clip(r, 1 − ε, 1 + ε) A) against the ratio r, next to
    the unclipped r A, with the trust region [1 − ε, 1 + ε] shaded."""
    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    ratio = torch.linspace(0.0, max_ratio, 401)
    advantages = torch.full_like(ratio, advantage)
    ax.plot(ratio, ratio * advantage, "--", color="grey", label="r·A (unclipped)")
    ax.plot(ratio, clipped_surrogate(ratio, advantages, clip_coef), lw=2.5, label="clipped")
    ax.axvspan(1 - clip_coef, 1 + clip_coef, color="tab:green", alpha=0.12, label="1 ± ε")
    ax.axvline(1.0, color="black", lw=0.6)
    ax.set(xlabel="probability ratio r = π_new(a|s) / π_old(a|s)", ylabel="objective")
    ax.set_title(f"A = {advantage:+.2f}, ε = {clip_coef:.2f}")
    ax.legend(fontsize=8)
    return ax


def session_strips(groups, clicked, row_labels, group_names, *, ax=None, title: str = ""):
    """What was shown, step by step: one strip per row (e.g. a policy's session k), a cell per
    step coloured by the shown item's group (``groups`` [R, T] ints, −1: none of them, e.g. a
    step after the session ended); a dot marks a click (``clicked`` [R, T] bool)."""
    groups, clicked = np.asarray(groups), np.asarray(clicked, dtype=bool)
    colours = ["0.9", *plt.get_cmap("tab10").colors[: len(group_names)]]
    ax = ax or plt.subplots(figsize=(7, 0.45 * len(groups) + 1))[1]
    cmap = plt.matplotlib.colors.ListedColormap(colours)
    ax.imshow(groups + 1, cmap=cmap, vmin=0, vmax=len(group_names), aspect="auto")
    rows, steps = np.nonzero(clicked)
    ax.scatter(steps, rows, color="k", s=18, label="clicked")
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xticks(range(groups.shape[1]), range(1, groups.shape[1] + 1))
    handles = [plt.matplotlib.patches.Patch(color=c) for c in colours[1:]]
    ax.legend(
        [*handles, ax.collections[0]],
        [*group_names, "clicked"],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    ax.set(xlabel="step of the session", title=title)
    return ax
