"""The token keep ratio r: search cost and final accuracy vs r.

For each r and seed, the default search (only r changes), then its genotype retrained with the default recipe.
Reported: search wall seconds (per-epoch seconds summed), the supernet's final val accuracy, the retrained test
accuracy, params and MACs of the genotype (FLOPs = 2 x MACs).

    python experiments/token_ratio.py [--seeds 0,1,2] [--ratios 0.25,0.5,1]
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import common
import matplotlib.pyplot as plt
import pandas as pd

from dasvit.arglists import KEEP_RATIOS
from dasvit.quick_exit import freeze_heap_at_exit


def parse_args(description: str, argv: list[str] | None) -> argparse.Namespace:
    parser = common.parser(description)
    parser.add_argument("--ratios", type=KEEP_RATIOS, default="0.25,0.5,1")
    return parser.parse_args(argv)


def ratio_table(exp: common.Experiment, args: argparse.Namespace) -> pd.DataFrame:
    """One row per (r, seed): the search's cost and val accuracy next to its genotype's retrained accuracy."""
    plan = common.budget(args.smoke, args.dataset)
    rows = []
    for ratio in args.ratios:
        for seed in args.seeds:
            run = exp.search(plan.search.with_overrides(seed=seed, keep_ratio=ratio), f"r{ratio:g}-seed{seed}")
            result = exp.retrain(f"r{ratio:g}-seed{seed}-retrain", replace(plan.retrain, seed=seed),
                                 genotype=run.genotype())
            rows.append({"keep_ratio": ratio, "seed": seed, "search_s": sum(r.seconds for r in run.history),
                         "supernet_val_acc": run.history[-1].val_acc, "test_acc": result["test_acc"],
                         "params": result["params"], "macs": result["macs"]})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(__doc__, argv)
    with common.Experiment("token_ratio", args) as exp:
        table = ratio_table(exp, args)
        summary = common.mean_std(table, "keep_ratio", ["search_s", "supernet_val_acc", "test_acc", "params", "macs"])
        fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
        left.errorbar(summary["keep_ratio"], summary["search_s_mean"], yerr=summary["search_s_std"].fillna(0),
                      marker="o", capsize=4)
        left.set(xlabel="keep ratio r", ylabel="search wall seconds")
        for column, label in (("supernet_val_acc", "supernet val"), ("test_acc", "retrained test")):
            right.errorbar(summary["keep_ratio"], summary[f"{column}_mean"], yerr=summary[f"{column}_std"].fillna(0),
                           marker="o", capsize=4, label=label)
        right.set(xlabel="keep ratio r", ylabel="accuracy")
        right.legend(fontsize=8)
        fig.tight_layout()
        exp.write(table, summary, fig)
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
