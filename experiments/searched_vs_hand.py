"""Searched vs hand-designed vs CNN, on the embedded MNIST digits, over seeds.

For each seed: the default DASViT search; then, each trained from scratch with the same recipe and budget
(``dasvit.retrain``: AdamW, warmup + cosine, label smoothing, augmentation, 50 epochs, which brings every one of
them to plateau: ``late_gain`` is the last 10 epochs' gain over the best before them): the searched genotype, the
standard ViT of the same depth and width (MHSA with 4 heads + MLP ratio 4 per block), the standard ViT narrowed to
the searched genotype's parameter count, and a small CNN. All ViTs use the searched genotype's head. The table
shows test accuracy, params and MACs (FLOPs = 2 x MACs): DASViT's shape of result would be equal or better accuracy
at markedly fewer params and MACs than the hand ViT; the CNN shows how large the ViT-CNN gap is here.

    python experiments/searched_vs_hand.py [--seeds 0,1,2]
"""

from __future__ import annotations

from dataclasses import replace

import common
import matplotlib.pyplot as plt
import pandas as pd

from dasvit.baselines import SmallCNN, hand_vit
from dasvit.genotype import Genotype
from dasvit.metrics import count_params
from dasvit.model import build_model
from dasvit.quick_exit import freeze_heap_at_exit

CNN_WIDTH = 16


def params_matched_hand_vit(searched: Genotype) -> Genotype:
    """The standard ViT at the searched depth whose width (a multiple of its 4 heads) gives the parameter count
    closest to the searched genotype's."""
    target = count_params(build_model(searched))
    candidates = [hand_vit(len(searched.blocks), width, searched.patch_size, searched.input, head=searched.head)
                  for width in range(8, searched.embed_dim + 1, 4)]
    return min(candidates, key=lambda g: abs(count_params(build_model(g)) - target))


def compare(exp: common.Experiment, plan: common.Budget, seed: int, cnn_width: int) -> list[dict]:
    genotype = exp.search(plan.search.with_overrides(seed=seed), f"search-seed{seed}").genotype()
    config = replace(plan.retrain, seed=seed)
    hand = hand_vit(len(genotype.blocks), genotype.embed_dim, genotype.patch_size, genotype.input, head=genotype.head)
    narrow = params_matched_hand_vit(genotype)
    results = {
        "DASViT (searched)": exp.retrain(f"searched-seed{seed}", config, genotype=genotype),
        "hand ViT": exp.retrain(f"hand-vit-seed{seed}", config, genotype=hand),
        "hand ViT (params-matched)": exp.retrain(f"hand-vit-matched-seed{seed}", config, genotype=narrow),
        f"CNN (width {cnn_width})": exp.retrain(f"cnn-seed{seed}", config, model_name=f"small_cnn_w{cnn_width}",
                                                model=lambda data: SmallCNN(data.in_chans, data.num_classes, cnn_width)),
    }
    return [{"model": name, "seed": seed, **r} for name, r in results.items()]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = common.parser(__doc__).parse_args(argv)
    plan = common.budget(args.smoke, args.dataset)
    with common.Experiment("searched_vs_hand", args) as exp:
        rows = [row for seed in args.seeds for row in compare(exp, plan, seed, 4 if args.smoke else CNN_WIDTH)]
        table = pd.DataFrame(rows)
        summary = common.mean_std(table, "model", ["test_acc", "params", "macs", "seconds", "late_gain"])
        hand = summary.set_index("model").loc["hand ViT"]
        summary["params_vs_hand"] = summary["params_mean"] / hand["params_mean"]
        summary["macs_vs_hand"] = summary["macs_mean"] / hand["macs_mean"]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, group in table.groupby("model", sort=False):
            ax.scatter(group["params"], group["test_acc"], label=name)
        ax.set(xscale="log", xlabel="parameters", ylabel="test accuracy", title="same recipe and budget, per seed")
        ax.legend(fontsize=8)
        exp.write(table, summary, fig, {"dataset": plan.retrain.data.dataset, "retrain_epochs": plan.retrain.epochs})
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
