"""Accuracy against cost over a sweep's trials: which trials are Pareto-optimal in (estimated accuracy up, MACs down), and
the figure logged to the sweep's MLflow run. A user asking for "the best network under N MACs" reads the front."""

from __future__ import annotations

from typing import Any

import pandas as pd


def pareto_mask(table: pd.DataFrame, score: str = "objective", cost: str = "macs") -> pd.Series:
    """True for each row that no other row beats: as good or better in both, strictly better in one. Rows
    without a score or a cost are never on the front."""
    valid = table[score].notna() & table[cost].notna()
    rows = table[valid]
    on_front = pd.Series(False, index=table.index)
    for index, row in rows.iterrows():
        dominated = ((rows[score] >= row[score]) & (rows[cost] <= row[cost])
                     & ((rows[score] > row[score]) | (rows[cost] < row[cost]))).any()
        on_front[index] = not dominated
    return on_front


def plot_pareto(table: pd.DataFrame, max_macs: int | None = None, score: str = "objective",
                cost: str = "macs") -> Any:
    """Every trial's score against its genotype's MACs, the front joined, the budget (if any) as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    front = table[table["pareto"]].sort_values(cost)
    rest = table[~table["pareto"]]
    ax.scatter(rest[cost], rest[score], color="C0", alpha=0.6, s=22, label="trial")
    ax.plot(front[cost], front[score], color="C3", marker="o", markersize=5, label="Pareto front")
    if max_macs is not None:
        ax.axvline(max_macs, color="grey", linestyle=":", label=f"max_macs {max_macs:,}")
    ax.set(xlabel="MACs per image of the genotype", ylabel=score, title="accuracy estimate against cost, per trial")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
