"""Robustness of the default search: seeds x keep ratio r x fairness lambda, each genotype retrained to plateau.

For each (head, r, lambda, seed): the default search with only those changed, then its genotype retrained with the
default recipe (50 epochs). Reported per (head, r, lambda): min / median / max test accuracy over the seeds, how
many genotypes are degenerate (a constant classifier: ``Genotype.blind``, or a test accuracy at chance) and how
many fall below 90 %. ``--heads cls`` runs the same grid with the CLS head, the alternative the default is judged
against.

    python experiments/robustness.py [--seeds 0,1,2,3,4] [--ratios 0.25,0.5,1] [--lambdas 0,0.5] [--heads avg]
"""

from __future__ import annotations

from dataclasses import replace

import common
import matplotlib.pyplot as plt
import pandas as pd

from dasvit.arglists import KEEP_RATIOS, LAMBDAS
from dasvit.quick_exit import freeze_heap_at_exit

TARGET = 0.90
CHANCE_MARGIN = 0.05  # within 5 points of 1/classes counts as chance


def parse_args(argv: list[str] | None):
    parser = common.parser(__doc__)
    parser.set_defaults(seeds="0,1,2,3,4")
    parser.add_argument("--ratios", type=KEEP_RATIOS, default="0.25,0.5,1")
    parser.add_argument("--lambdas", type=LAMBDAS, default="0,0.5")
    parser.add_argument("--heads", default="avg", help="comma-separated heads: avg (the default), cls")
    return parser.parse_args(argv)


def grid_rows(exp: common.Experiment, args) -> list[dict]:
    plan = common.budget(args.smoke, args.dataset)
    chance = 1.0 / 10
    rows = []
    for head in args.heads.split(","):
        for ratio in args.ratios:
            for lam in args.lambdas:
                for seed in args.seeds:
                    label = f"{head}-r{ratio:g}-lambda{lam:g}-seed{seed}"
                    config = plan.search.with_overrides(seed=seed, keep_ratio=ratio, fairness_lambda=lam, head=head)
                    run = exp.search(config, label)
                    genotype = run.genotype()
                    result = exp.retrain(f"{label}-retrain", replace(plan.retrain, seed=seed), genotype=genotype)
                    rows.append({"head": head, "keep_ratio": ratio, "fairness_lambda": lam, "seed": seed,
                                 "supernet_val_acc": run.history[-1].val_acc, "blind": genotype.blind,
                                 "degenerate": genotype.blind or result["test_acc"] < chance + CHANCE_MARGIN,
                                 **result})
    return rows


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    grouped = table.groupby(["head", "keep_ratio", "fairness_lambda"], sort=False)
    summary = grouped["test_acc"].agg(["min", "median", "max"]).add_prefix("test_acc_")
    summary.insert(0, "seeds", grouped.size())
    summary["degenerate"] = grouped["degenerate"].sum()
    summary[f"below_{TARGET:g}"] = grouped["test_acc"].apply(lambda acc: int((acc < TARGET).sum()))
    summary["late_gain_max"] = grouped["late_gain"].max()
    summary["params_median"] = grouped["params"].median()
    return summary.reset_index()


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    name = "robustness" if args.heads == "avg" else f"robustness_{args.heads.replace(',', '_')}"
    with common.Experiment(name, args) as exp:
        table = pd.DataFrame(grid_rows(exp, args))
        summary = summarise(table)
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for k, ((head, lam), group) in enumerate(table.groupby(["head", "fairness_lambda"], sort=False)):
            offset = (k - 0.5) * 0.03
            ax.scatter(group["keep_ratio"] + offset, group["test_acc"], label=f"{head}, lambda {lam:g}", s=18)
        ax.axhline(TARGET, color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel="keep ratio r", ylabel="retrained test accuracy", title="one point per seed")
        ax.legend(fontsize=8)
        exp.write(table, summary, fig, {"target": TARGET,
                                         "retrain_epochs": common.budget(args.smoke, args.dataset).retrain.epochs})
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
