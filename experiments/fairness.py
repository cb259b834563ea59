"""The operation-fairness regulariser: alpha with lambda = 0 vs lambda > 0.

For each lambda and seed, the default search (only lambda changes). Reported: the supernet's final skip share
(mean softmax weight of ``skip`` over the edges that offer it), the share of the final genotype's edges that are
``skip``, the fairness penalty, alpha entropy and val accuracy; and, side by side, alpha per edge over epochs for
seed 0 at lambda = 0 and the largest lambda. ``none`` never enters a genotype (argmax excludes it).

    python experiments/fairness.py [--seeds 0,1,2] [--lambdas 0,0.5,2]
"""

from __future__ import annotations

import io

import common
import matplotlib.pyplot as plt
import pandas as pd

from dasvit.arglists import LAMBDAS
from dasvit.plots import plot_alpha_history
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.vocabulary import parse_op


def summarise(run) -> dict:
    edges = [e for block in run.genotype().blocks for e in block.edges]
    last = run.history[-1]
    return {"skip_share": last.skip_share, "genotype_skip_edges": sum(parse_op(e.op).family == "skip" for e in edges),
            "genotype_edges": len(edges), "fairness_penalty": last.fairness_penalty,
            "alpha_entropy": last.alpha_entropy, "val_acc": last.val_acc}


def side_by_side(histories: dict[float, dict]) -> plt.Figure:
    panels = []
    for lam, history in histories.items():
        figure = plot_alpha_history(history)
        figure.suptitle(f"lambda = {lam:g}: op weights per edge")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        plt.close(figure)
        buffer.seek(0)
        panels.append(plt.imread(buffer))
    fig, axes = plt.subplots(1, len(panels), figsize=(8 * len(panels), 8))
    for ax, image in zip(axes, panels):
        ax.imshow(image)
        ax.axis("off")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = common.parser(__doc__)
    parser.add_argument("--lambdas", type=LAMBDAS, default="0,0.5,2")
    args = parser.parse_args(argv)
    plan = common.budget(args.smoke, args.dataset)
    rows, histories = [], {}
    with common.Experiment("fairness", args) as exp:
        for lam in args.lambdas:
            for seed in args.seeds:
                run = exp.search(plan.search.with_overrides(seed=seed, fairness_lambda=lam), f"lambda{lam:g}-seed{seed}")
                rows.append({"fairness_lambda": lam, "seed": seed, **summarise(run)})
                if seed == args.seeds[0] and lam in (min(args.lambdas), max(args.lambdas)):
                    histories[lam] = {"ops": list(run.config.ops), "epochs": run.alpha_history}
        table = pd.DataFrame(rows)
        summary = common.mean_std(table, "fairness_lambda",
                                  ["skip_share", "genotype_skip_edges", "fairness_penalty", "alpha_entropy", "val_acc"])
        exp.write(table, summary, side_by_side(histories), {"lambdas": args.lambdas})
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
