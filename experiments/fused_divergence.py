"""Why the eager and fused mixed ops can end a search with different genotypes: a per-step divergence trace.

Two ``SearchRun``s with the same seed, one eager and one fused, take the first stage's steps in lockstep on the
batches the search itself draws. After every step the script records the largest relative difference of their
alphas and of their weights, and on how many edges the alpha argmax differs. A control pair does the same with two
*eager* runs, one of whose weights is nudged by one float32 ulp (x (1 + 2^-23)) before the first step. Both pairs
run at the default keep ratio and at r = 1 (no token selection). If eager-vs-fused diverges like the control, the
two paths compute the same function and rounding alone separates them; a change in the math would diverge where
the control does not. At each stage end it compares the op pruning (a discrete choice that a near-tie can tip), and
it runs both pairs through the whole search to see whether a 1-ulp nudge changes the genotype as well.

    python experiments/fused_divergence.py --seed 2          # a seed whose genotypes differed (README)
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import matplotlib
import pandas as pd
import torch

from dasvit.config import ConfigError, DataConfig, SearchConfig
from dasvit.data import load_data, make_loader
from dasvit.progressive import prune_masks, pruning_strength
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.search import SearchRun
from dasvit.seeding import derived_seed, seed_everything
from dasvit.vocabulary import dataset_names

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).double() for t in tensors])


def relative_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    x, y = _flat(a), _flat(b)
    return float((x - y).abs().max() / y.abs().max().clamp_min(1e-30))


def argmax_disagreements(a: SearchRun, b: SearchRun) -> int:
    return sum(int((x.argmax(-1) != y.argmax(-1)).sum()) for x, y in zip(a.model.op_weights(), b.model.op_weights()))


def trace(left: SearchRun, right: SearchRun) -> list[dict[str, float]]:
    """The first stage's steps in lockstep, on the batches the search itself draws; the differences after each."""
    config, rows = left.config, []
    for epoch in range(config.stages[0].epochs):
        seed = derived_seed(config.seed, 0, epoch)  # the batches SearchRun._loaders draws in stage 0
        seed_everything(seed)
        train = make_loader(left.train_set, left.rank_batch, shuffle=True, seed=seed, drop_last=True)
        val = make_loader(left.val_set, left.rank_batch, shuffle=True, seed=seed + 1, drop_last=True)
        for (xt, yt), (xv, yv) in zip(train, val):
            for run in (left, right):
                run.step((xt, yt), (xv, yv))
            rows.append({"step": len(rows) + 1,
                         "alpha_rel_diff": relative_difference(left.model.arch_parameters(),
                                                               right.model.arch_parameters()),
                         "weight_rel_diff": relative_difference(left.model.weight_parameters(),
                                                                right.model.weight_parameters()),
                         "argmax_disagreements": argmax_disagreements(left, right)})
    return rows


def pruning(left: SearchRun, right: SearchRun, next_stage: int = 1) -> dict[str, float]:
    """The end of a stage keeps the strongest ``ops`` ops per edge: on how many edges the two runs keep different
    ones, and the smallest gap, over all edges, between the last op kept and the first op dropped."""
    keep = left.config.stages[next_stage].ops
    masks = [prune_masks(run.model.arch_parameters(), run.model.masks, run.none_columns, keep) for run in (left, right)]
    differing = sum(int((a != b).any(dim=1).sum()) for a, b in zip(*masks))
    gaps = []
    for alpha, mask in zip(left.model.arch_parameters(), left.model.masks):
        ranked = pruning_strength(alpha, mask, left.none_columns).sort(dim=1, descending=True).values
        gaps.append((ranked[:, keep - 1] - ranked[:, keep]).min())
    return {"edges_pruned_differently": differing, "smallest_keep_drop_gap": float(min(gaps))}


def whole_search(left: SearchRun, right: SearchRun) -> list[dict[str, float]]:
    """Both runs through the whole progressive search, epoch by epoch (each on its own loaders, which draw the same
    batches): the alpha difference after every epoch, and at every stage end the pruning comparison."""
    rows = []
    while not left.finished:
        boundary = left.epochs_done == left.config.stages[left.stage].epochs
        pruned = pruning(left, right, left.stage + 1) if boundary else {}
        left.advance()
        right.advance()
        same_masks = all(bool((a == b).all()) for a, b in zip(left.model.masks, right.model.masks))
        rows.append({"epoch": len(left.history), "stage": left.stage, "same_op_masks": same_masks,
                     "alpha_rel_diff": relative_difference(left.model.arch_parameters(), right.model.arch_parameters())
                     if same_masks else float("nan"),
                     "argmax_disagreements": argmax_disagreements(left, right) if same_masks else -1, **pruned})
    return rows


def nudged(run: SearchRun) -> SearchRun:
    """The control: every weight multiplied by (1 + 2^-23), one float32 ulp."""
    with torch.no_grad():
        for parameter in run.model.weight_parameters():
            parameter.mul_(1 + 2.0 ** -23)
    return run


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--dataset", choices=dataset_names(), default="mnist5k")
    parser.add_argument("--epochs", type=int, help="epochs of every stage (default: the search's own)")
    parser.add_argument("--embed-dim", type=int, help="the supernet's width (default: the search's own)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    config = SearchConfig(data=DataConfig(args.dataset), seed=args.seed).with_overrides(embed_dim=args.embed_dim)
    if args.epochs is not None:
        config = config.with_overrides(stages=tuple(replace(stage, epochs=args.epochs) for stage in config.stages))
    try:
        config.validate()
    except ConfigError as err:
        parser.error(str(err))
    torch.set_num_threads(1)  # as in the README's genotype comparison
    data = load_data(DataConfig(args.dataset))
    pairs = {}
    for keep_ratio in (config.keep_ratio, 1.0):
        at_r = config.with_overrides(keep_ratio=keep_ratio)
        eager, fused = SearchRun(at_r, data), SearchRun(at_r, data, fused=True)
        assert relative_difference(eager.model.weight_parameters(), fused.model.weight_parameters()) == 0.0
        pairs[f"r={keep_ratio:g}: eager vs fused"] = (eager, fused)
        pairs[f"r={keep_ratio:g}: eager vs eager nudged 1 ulp"] = (SearchRun(at_r, data), nudged(SearchRun(at_r, data)))
    tables, pruned = [], {}
    for label, (left, right) in pairs.items():
        table = pd.DataFrame(trace(left, right))
        pruned[label] = pruning(left, right)
        table.insert(0, "pair", label)
        tables.append(table)
        print(label, table.iloc[sorted({0, min(9, len(table) - 1), len(table) // 2, len(table) - 1})].to_string(
            index=False), flush=True)
    table = pd.concat(tables, ignore_index=True)
    stem = f"fused_divergence_seed{args.seed}"
    searches = {}
    for label, (left, right) in {"eager vs fused": (SearchRun(config, data), SearchRun(config, data, fused=True)),
                                 "eager vs eager nudged 1 ulp": (SearchRun(config, data),
                                                                 nudged(SearchRun(config, data)))}.items():
        epochs = pd.DataFrame(whole_search(left, right))
        ids = [hashlib.sha1(run.genotype().to_json().encode()).hexdigest()[:10] for run in (left, right)]
        same = ids[0] == ids[1]
        searches[label] = {"same_genotype": same, "genotype_ids": ids, "epochs": epochs.to_dict("records")}
        print(label, "(whole search)\n", epochs.to_string(index=False), f"\nsame genotype: {same} {ids}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / f"{stem}.csv", index=False)
    summary = {label: {"first_step_alpha_rel_diff": float(t["alpha_rel_diff"].iloc[0]),
                       "last_step_alpha_rel_diff": float(t["alpha_rel_diff"].iloc[-1]),
                       "last_step_weight_rel_diff": float(t["weight_rel_diff"].iloc[-1]),
                       "last_step_argmax_disagreements": int(t["argmax_disagreements"].iloc[-1]),
                       **pruned[label]}
               for label, t in table.groupby("pair", sort=False)}
    (args.out / f"{stem}.json").write_text(json.dumps({
        "seed": args.seed, "steps": len(table) // 2, "torch": torch.__version__, "summary": summary,
        "whole_search": searches}, indent=2))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, rows in table.groupby("pair", sort=False):
        ax.semilogy(rows["step"], rows["alpha_rel_diff"], label=label,
                    linestyle="--" if "nudged" in label else "-")
    ax.set(xlabel="search step (stage 0)", ylabel="max relative alpha difference",
           title=f"eager vs fused, seed {args.seed} (CPU, fp32)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / f"{stem}.png", dpi=120)
    print(json.dumps(summary, indent=2))
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
