"""Figures of a search: how alpha evolved on every edge, and the genotype's DAGs."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from dasvit.genotype import Genotype  # noqa: E402
from dasvit.vocabulary import dag_edges  # noqa: E402


def plot_alpha_history(alpha_history: dict[str, Any]) -> Figure:
    """softmax(alpha) per op over global epochs: one panel per (block, edge); stages are shaded apart.

    ``alpha_history`` is the ``alpha_history.json`` a search writes. A block that does not exist yet in a stage
    has no points there.
    """
    ops, epochs = alpha_history["ops"], alpha_history["epochs"]
    depth = max(len(e["weights"]) for e in epochs)
    n_edges = len(epochs[0]["weights"][0])
    nodes = next(n for n in range(1, 16) if len(dag_edges(n)) == n_edges)
    x = np.array([e["global_epoch"] for e in epochs])
    fig, axes = plt.subplots(depth, n_edges, figsize=(3.2 * n_edges, 2.2 * depth), sharex=True, sharey=True,
                             squeeze=False)
    colours = plt.get_cmap("tab10")
    for b in range(depth):
        for e, (i, j) in enumerate(dag_edges(nodes)):
            ax = axes[b][e]
            for k, op in enumerate(ops):
                y = np.array([ep["weights"][b][e][k] if b < len(ep["weights"]) else np.nan for ep in epochs])
                ax.plot(x, y, marker=".", color=colours(k % 10), label=op)
            for stage in sorted({ep["stage"] for ep in epochs})[1::2]:
                span = x[[ep["stage"] == stage for ep in epochs]]
                ax.axvspan(span.min() - 0.5, span.max() + 0.5, color="0.93", zorder=0)
            ax.set_title(f"block {b} edge {i}->{j}", fontsize=9)
            ax.set_ylim(0, 1)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for row in axes:
        row[0].set_ylabel("softmax(alpha)")
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle("op weights per edge (shaded: alternate stages)")
    fig.tight_layout()
    return fig


def plot_genotype(genotype: Genotype) -> Figure:
    """Each block's DAG: nodes left to right, one labelled arc per live edge."""
    blocks = genotype.blocks
    fig, axes = plt.subplots(1, len(blocks), figsize=(2.6 * len(blocks), 2.4), squeeze=False)
    for ax, (index, block) in zip(axes[0], enumerate(blocks)):
        for n in range(block.nodes + 1):
            ax.scatter([n], [0], s=260, color="tab:blue" if n in (0, block.nodes) else "tab:gray", zorder=3)
            ax.text(n, 0, str(n), ha="center", va="center", color="white", fontsize=9, zorder=4)
        for k, edge in enumerate(block.live_edges()):
            bend = 0.35 * (edge.target - edge.source) * (1 if k % 2 == 0 else -1)
            ax.annotate("", xy=(edge.target, 0), xytext=(edge.source, 0),
                        arrowprops={"arrowstyle": "->", "connectionstyle": f"arc3,rad={-bend}", "color": "0.3"})
            ax.text((edge.source + edge.target) / 2, bend * (edge.target - edge.source) * 0.55, edge.op,
                    ha="center", fontsize=8, bbox={"fc": "white", "ec": "none", "pad": 0.5})
        ax.set_title(f"block {index}", fontsize=9)
        ax.set_xlim(-0.5, block.nodes + 0.5)
        ax.set_ylim(-1, 1)
        ax.axis("off")
    fig.suptitle(f"genotype: dim {genotype.embed_dim}, patch {genotype.patch_size}")
    fig.tight_layout()
    return fig
