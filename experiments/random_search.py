"""Searched vs random search at the same total compute.

For each seed, DASViT's budget is the wall time of its search (measured, from the cached run's per-epoch
seconds). Random search spends the same wall time drawing genotypes uniformly from the same space (the final
stage's depth, every op; random alpha through the search's own argmax rule), training each briefly on the
search's train half and scoring it on the search-val half, never on the test set; the best by val accuracy is
then retrained exactly like the searched genotype. Both finals are compared on test accuracy, params and MACs.

    python experiments/random_search.py [--seeds 0,1,2] [--proxy-epochs 3]
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import common
import matplotlib.pyplot as plt
import pandas as pd
import torch

from dasvit.baselines import random_genotype
from dasvit.data import search_holdout
from dasvit.genotype import InputSpec
from dasvit.metrics import count_macs
from dasvit.model import build_model
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.retrain import retrain
from dasvit.seeding import derived_seed


def random_search(exp: common.Experiment, plan: common.Budget, seed: int, budget_s: float, proxy_epochs: int,
                  widths: Sequence[int] = (), depths: Sequence[int] = (), max_macs: int | None = None):
    """Draw and proxy-train random genotypes until ``budget_s`` wall seconds are spent; return the best and a log.

    Each draw's width and final depth are drawn uniformly from ``widths`` and ``depths`` (default: the search
    config's); a draw over ``max_macs`` is discarded untrained, as a sweep would score it below every network
    within the budget."""
    config = plan.search
    widths, depths = list(widths) or [config.embed_dim], list(depths) or [config.stages[-1].depth]
    data = exp.data(config.data)
    holdout = search_holdout(data, seed)
    spec = InputSpec(config.data.resolved_image_size, data.in_chans, data.num_classes)
    generator = torch.Generator().manual_seed(derived_seed(seed, 99))
    proxy = replace(plan.retrain, epochs=proxy_epochs, seed=seed)
    start, tried = time.perf_counter(), []
    while time.perf_counter() - start < budget_s or not tried:
        width, depth = (choices[0] if len(choices) == 1 else  # one choice draws nothing: the same stream as ever
                        int(choices[torch.randint(len(choices), (1,), generator=generator)]) for choices in (widths, depths))
        genotype = random_genotype(config.space, depth, width, config.resolved_patch_size, spec, generator)
        if max_macs is not None and count_macs(build_model(genotype), spec.image_size, spec.in_chans) > max_macs:
            continue
        result = retrain(genotype, proxy, holdout)
        tried.append((result.test_acc, genotype, time.perf_counter() - start))
    best = max(tried, key=lambda t: t[0])
    return best[1], [{"seed": seed, "draw": k, "val_acc": acc, "elapsed_s": t} for k, (acc, _, t) in enumerate(tried)]


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = common.parser(__doc__)
    parser.add_argument("--proxy-epochs", type=int, default=3)
    args = parser.parse_args(argv)
    plan = common.budget(args.smoke, args.dataset)
    rows, draws = [], []
    with common.Experiment("random_search", args) as exp:
        for seed in args.seeds:
            run = exp.search(plan.search.with_overrides(seed=seed), f"search-seed{seed}")
            budget_s = sum(r.seconds for r in run.history)
            best, log = random_search(exp, plan, seed, budget_s, 1 if args.smoke else args.proxy_epochs)
            draws += log
            config = replace(plan.retrain, seed=seed)
            for method, genotype, n in (("DASViT", run.genotype(), 1), ("random search", best, len(log))):
                result = exp.retrain(f"{method}-seed{seed}", config, genotype=genotype)
                rows.append({"method": method, "seed": seed, "search_s": budget_s, "candidates": n, **result})
        table = pd.DataFrame(rows)
        summary = common.mean_std(table, "method", ["test_acc", "params", "macs", "candidates"])
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for seed, group in pd.DataFrame(draws).groupby("seed"):
            ax.plot(group["elapsed_s"], group["val_acc"].cummax(), marker=".", label=f"random, seed {seed}")
        ax.set(xlabel="wall seconds (DASViT's search budget)", ylabel="best proxy val accuracy so far")
        ax.legend(fontsize=8)
        exp.write(table, summary, fig, {"proxy_epochs": args.proxy_epochs, "draws": draws})
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
