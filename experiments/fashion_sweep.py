"""What the Fashion-MNIST sweep hands back, beside the networks a user could train instead on the same images.

For each seed: the sweep of ``experiments/configs/fashion.yaml`` (study size of the protocol, ``dasvit/fashion_mnist.py``)
run as a user runs it, its wall time on this machine, its champion (the best retrained trial on the selection split);
the project's small CNN and the hand-designed ViT (depth 4, width 64) retrained with the same recipe on the same
10,000 images. Every network is scored once on the official test split; the selection accuracy is beside it.

    python experiments/fashion_sweep.py [--seeds 0]
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import common
import matplotlib.pyplot as plt
import pandas as pd
from sweep_vs_baselines import CORES, SMOKE, run_sweep, small_cnn, sweep_pick

from dasvit.baselines import hand_vit
from dasvit.genotype import InputSpec
from dasvit.platform.config import SweepConfig
from dasvit.platform.study_report import completed, describe, load_study, param_importances
from dasvit.quick_exit import freeze_heap_at_exit

CONFIG = Path(__file__).parent / "configs" / "fashion.yaml"
HAND_DEPTH, HAND_WIDTH = 4, 64


def rows_for(exp: common.Experiment, plan: common.Budget, seed: int, smoke: bool,
             trials: list[pd.DataFrame]) -> list[dict]:
    """One seed's rows: the sweep's champion, the CNN, the hand ViT; the sweep's per-trial table goes to ``trials``."""
    table, sweep_s = run_sweep(exp, seed, smoke, exp.tracking_uri, None if smoke else CONFIG)
    trials.append(table.assign(seed=seed))
    champion = sweep_pick(table)
    config = replace(plan.retrain, seed=seed)
    data = exp.data(config.data)
    spec = InputSpec(config.data.resolved_image_size, data.in_chans, data.num_classes)
    hand = hand_vit(HAND_DEPTH, 16 if smoke else HAND_WIDTH, plan.search.resolved_patch_size, spec, head="avg")
    results = {"cnn": small_cnn(exp, plan, seed, smoke), "hand_vit": exp.retrain(f"hand-seed{seed}", config, hand)}
    rows = [{"method": "sweep", "seed": seed, "selection_acc": champion.get("selection_acc"),
             "test_acc": champion["test_acc"], "params": champion["params"], "macs": champion["macs"],
             "cpu_seconds": CORES * sweep_s, "wall_seconds": sweep_s, "trials": len(table),
             "genotype_id": champion["genotype_id"]}]
    rows += [{"method": name, "seed": seed, "selection_acc": result.get("val_acc"), "test_acc": result["test_acc"],
              "params": result["params"], "macs": result["macs"], "cpu_seconds": CORES * result["seconds"],
              "wall_seconds": result["seconds"], "trials": 1, "genotype_id": ""} for name, result in results.items()]
    return rows


def importances(exp: common.Experiment, seed: int, smoke: bool) -> str:
    """The sweep's Optuna parameter importances, from its study, as its summary printed them."""
    label = f"seed{seed}-smoke" if smoke else f"seed{seed}-{CONFIG.stem}"
    path = exp.cache / "sweeps" / label / "ray_results" / "sweep-optuna.db"
    if not path.is_file():  # a sweep whose results table alone was kept
        return "no Optuna study kept with this sweep"
    study = load_study(path)
    return describe(param_importances(study), len(completed(study)))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = common.parser(__doc__)
    parser.set_defaults(seeds="0", dataset="fashion-mnist")
    args = parser.parse_args(argv)
    plan = common.budget(args.smoke, args.dataset)
    sweep = SweepConfig.load(SMOKE if args.smoke else CONFIG)
    with common.Experiment("fashion_sweep", args) as exp:
        trials: list[pd.DataFrame] = []
        table = pd.DataFrame([row for seed in args.seeds for row in rows_for(exp, plan, seed, args.smoke, trials)])
        table["selection_acc"] = table["selection_acc"].astype(float)  # None (no selection split): NaN
        summary = common.mean_std(table, "method", ["selection_acc", "test_acc", "params", "macs", "wall_seconds"])
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for name, group in table.groupby("method", sort=False):
            ax.scatter(group["macs"], group["test_acc"], label=name)
        ax.set(xscale="log", xlabel="MACs per image", ylabel="test accuracy", title="one point per method and seed")
        ax.legend(fontsize=8)
        exp.write(table, summary, fig, {
            "rows": table.to_dict(orient="records"), "cores": CORES, "retrain_epochs": plan.retrain.epochs,
            "train_images": plan.retrain.data.train_images or "protocol default", "num_trials": sweep.num_trials,
            "startup_trials": sweep.startup_trials, "objective": sweep.objective,
            "importances": {seed: importances(exp, seed, args.smoke) for seed in args.seeds}})
        exp.write_extra("trials.csv", pd.concat(trials).to_csv(index=False))  # every sweep trial
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
