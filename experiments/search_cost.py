"""Search cost: wall time and peak memory of the full progressive search on the embedded default, per stage.

Each seed's search runs in a fresh process. Memory per stage is the peak memory one search step allocates above
what was live before it (the torch profiler's allocation events; ``dasvit.metrics.peak_memory_during``),
measured on a copy of the run after the stage's first epoch so the search itself is untouched, next to the
memory the stage's weights, gradients and optimiser state hold. (The process's peak RSS, ~1.1 GB, is reached
while importing torch and loading the data and does not move during the search.) Times are wall-clock seconds
on this machine, summed over the stage's epochs.

    python experiments/search_cost.py [--seeds 0,1,2]
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import common
import matplotlib.pyplot as plt
import pandas as pd
import torch

from dasvit.config import SearchConfig
from dasvit.data import load_data, make_loader
from dasvit.epoch_record import EpochRecord
from dasvit.metrics import peak_memory_during
from dasvit.platform import tracking
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.search import SearchRun


def step_memory_mb(run: SearchRun) -> tuple[float, float]:
    """(peak MB one search step allocates, MB of weights + gradients + AdamW state), on a copy of ``run``."""
    probe = copy.deepcopy(run)
    (train, val) = next(zip(*[make_loader(s, run.config.batch_size, shuffle=True, drop_last=True)
                              for s in (probe.train_set, probe.val_set)]))
    peak = peak_memory_during(lambda: probe.step(train, val), torch.device("cpu"))
    state = 4 * sum(p.numel() * p.element_size() for p in probe.model.weight_parameters())
    return peak / 2**20, state / 2**20


def timed_search(config: SearchConfig) -> list[dict]:
    """Run one search; return per epoch: stage, depth, ops per edge, seconds, and the step memory of each stage."""
    data = load_data(config.data)
    rows: list[dict] = []
    last = time.perf_counter()

    def record(run: SearchRun, epoch: EpochRecord) -> None:
        nonlocal last
        seconds = time.perf_counter() - last
        memory = step_memory_mb(run) if epoch.epoch == 0 else (float("nan"), float("nan"))
        rows.append({"stage": epoch.stage, "depth": epoch.depth, "ops_per_edge": int(run.model.masks[0].sum(1).max()),
                     "seconds": seconds, "step_peak_mb": memory[0], "weights_grads_adam_mb": memory[1],
                     "val_acc": epoch.val_acc})
        last = time.perf_counter()  # the memory probe is not search time

    SearchRun(config, data).run(on_epoch_end=record)
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = common.parser(__doc__).parse_args(argv)
    plan = common.budget(args.smoke, args.dataset)
    rows = []
    with common.Experiment("search_cost", args) as exp:
        for seed in args.seeds:
            config = plan.search.with_overrides(seed=seed)
            with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
                epochs = pool.submit(timed_search, config).result()
            per_stage = pd.DataFrame(epochs).groupby("stage").agg(
                depth=("depth", "first"), ops_per_edge=("ops_per_edge", "first"), epochs=("seconds", "size"),
                seconds=("seconds", "sum"), step_peak_mb=("step_peak_mb", "max"),
                weights_grads_adam_mb=("weights_grads_adam_mb", "max"), val_acc=("val_acc", "last"))
            with exp.child(f"search-cost-seed{seed}", "search", config.to_dict()) as run_id:
                for stage, row in per_stage.iterrows():
                    tracking.log_metrics(exp.client, run_id, {"stage_seconds": row.seconds,
                                                              "stage_step_peak_mb": row.step_peak_mb}, step=stage)
            rows += [{"seed": seed, "stage": stage, **row} for stage, row in per_stage.iterrows()]
        table = pd.DataFrame(rows)
        totals = table.groupby("seed")["seconds"].sum()
        summary = common.mean_std(table, ["stage", "depth", "ops_per_edge", "epochs"],
                                  ["seconds", "step_peak_mb", "weights_grads_adam_mb"])
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar(summary["stage"].astype(str), summary["seconds_mean"], yerr=summary["seconds_std"].fillna(0), capsize=4)
        ax.set(xlabel="stage", ylabel="wall seconds", title=f"search cost per stage (total {totals.mean():.0f} s)")
        exp.write(table, summary, fig, {"total_seconds_mean": totals.mean(), "total_seconds_std": totals.std()})
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
