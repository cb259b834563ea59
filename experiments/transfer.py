"""Transferability: a genotype searched on one data set, retrained on another, vs one searched on the target.

Pairs: scikit-learn's 8x8 digits <-> the 28x28 MNIST digits (both embedded), and CIFAR-10 -> CIFAR-100 when
``--cifar-root`` holds both. A transferred genotype keeps its blocks and width; its stem (patch size, image size,
channels, classes) is the target's default, exactly as a target-searched genotype's is. Both are retrained with
the same recipe and budget on the target; the gap in test accuracy is what transferring costs.

    python experiments/transfer.py [--seeds 0,1,2] [--cifar-root DIR]
"""

from __future__ import annotations

from dataclasses import replace

import common
import matplotlib.pyplot as plt
import pandas as pd

from dasvit.config import DataConfig
from dasvit.genotype import Genotype, InputSpec
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.vocabulary import dataset_spec

PAIRS = [("digits", "mnist5k"), ("mnist5k", "digits")]


def for_target(genotype: Genotype, dataset: str, in_chans: int, num_classes: int) -> Genotype:
    defaults = dataset_spec(dataset)
    return replace(genotype, patch_size=defaults.patch_size,
                   input=InputSpec(defaults.image_size, in_chans, num_classes))


def transfer(exp: common.Experiment, plan: common.Budget, source: str, target: str, seed: int,
             root: str | None) -> list[dict]:
    def searched_on(dataset: str) -> Genotype:
        config = plan.search.with_overrides(seed=seed, data=DataConfig(dataset, data_root=root))
        return exp.search(config, f"search-{dataset}-seed{seed}").genotype()

    data = exp.data(DataConfig(target)) if root is None else None
    config = replace(plan.retrain, seed=seed, data=DataConfig(target, data_root=root))
    in_chans, classes = (data.in_chans, data.num_classes) if data else (3, 100 if target == "cifar100" else 10)
    rows = []
    for origin in (source, target):
        genotype = for_target(searched_on(origin), target, in_chans, classes)
        result = exp.retrain(f"{origin}-to-{target}-seed{seed}", config, genotype=genotype)
        rows.append({"target": target, "searched_on": origin, "transferred": origin != target, "seed": seed, **result})
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = common.parser(__doc__)
    parser.add_argument("--cifar-root", help="a folder with torchvision's CIFAR-10 and CIFAR-100 files")
    args = parser.parse_args(argv)
    plan = common.budget(args.smoke, args.dataset)
    pairs = [(s, t, None) for s, t in PAIRS[:1 if args.smoke else None]]
    if args.cifar_root:
        pairs.append(("cifar10", "cifar100", args.cifar_root))
    with common.Experiment("transfer", args) as exp:
        rows = [row for s, t, root in pairs for seed in args.seeds
                for row in transfer(exp, plan, s, t, seed, root)]
        table = pd.DataFrame(rows)
        summary = common.mean_std(table, ["target", "searched_on"], ["test_acc", "params", "macs"])
        fig, ax = plt.subplots(figsize=(5, 3.5))
        labels = [f"{r.searched_on} -> {r.target}" for r in summary.itertuples()]
        ax.bar(labels, summary["test_acc_mean"], yerr=summary["test_acc_std"].fillna(0), capsize=4,
               color=["tab:orange" if s != t else "tab:blue" for s, t in zip(summary["searched_on"], summary["target"])])
        ax.set(ylabel="test accuracy on the target", title="searched on the source (orange) vs the target (blue)")
        ax.set_ylim(max(0.0, summary["test_acc_mean"].min() - 0.1), 1.0)
        plt.setp(ax.get_xticklabels(), rotation=15)
        exp.write(table, summary, fig, {"pairs": pairs, "retrain_epochs": plan.retrain.epochs})
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
