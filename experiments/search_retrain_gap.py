"""The search-retrain gap: does the supernet's val accuracy predict the retrained accuracy?

The genotypes of the token-ratio experiment's searches (every r x seed: at least 8) with their supernet's final
val accuracy and their retrained test accuracy (same searches and retrainings, shared through the cache). Kendall's
tau between the two says how well the search's own accuracy ranks what it finds.

    python experiments/search_retrain_gap.py [--seeds 0,1,2] [--ratios 0.25,0.5,1]
"""

from __future__ import annotations

import common
import matplotlib.pyplot as plt
import pandas as pd
from scipy.stats import kendalltau
from token_ratio import parse_args, ratio_table

from dasvit.quick_exit import freeze_heap_at_exit


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_args(__doc__, argv)
    with common.Experiment("search_retrain_gap", args) as exp:
        table = ratio_table(exp, args)
        table["gap"] = table["test_acc"] - table["supernet_val_acc"]
        tau, p_value = kendalltau(table["supernet_val_acc"], table["test_acc"])
        summary = pd.DataFrame([{"genotypes": len(table), "kendall_tau": tau, "p_value": p_value,
                                 "mean_gap": table["gap"].mean(), "std_gap": table["gap"].std()}])
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        for ratio, group in table.groupby("keep_ratio"):
            ax.scatter(group["supernet_val_acc"], group["test_acc"], label=f"r = {ratio:g}")
        ax.set(xlabel="supernet val accuracy (end of search)", ylabel="retrained test accuracy",
               title=f"Kendall tau = {tau:.2f} (n = {len(table)})")
        ax.legend(fontsize=8)
        exp.write(table, summary, fig, {"kendall_tau": tau, "p_value": p_value})
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
