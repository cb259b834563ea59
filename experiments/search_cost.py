"""Search cost: wall time and peak memory of the full progressive search on the embedded default, per stage.

Each seed's search runs in a fresh process, so that process's peak resident memory (``ru_maxrss``), read at the
end of every stage, belongs to that search alone; the RSS before the search (Python, torch, the data) is reported
beside it. Times are wall-clock seconds on this machine, summed over the stage's epochs.

    python experiments/search_cost.py [--seeds 0,1,2]
"""

from __future__ import annotations

import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import common
import matplotlib.pyplot as plt
import pandas as pd

from dasvit.config import SearchConfig
from dasvit.data import load_data
from dasvit.search import EpochRecord, SearchRun
from dasvit_platform import tracking


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed_search(config: SearchConfig) -> tuple[list[dict], float]:
    """Run one search; return per-epoch (stage, depth, seconds, peak RSS so far) and the RSS before it."""
    data = load_data(config.data.dataset)
    baseline = peak_rss_mb()
    rows: list[dict] = []
    last = time.perf_counter()

    def record(run: SearchRun, epoch: EpochRecord) -> None:
        nonlocal last
        now = time.perf_counter()
        ops_per_edge = int(run.model.masks[0].sum(1).max())
        rows.append({"stage": epoch.stage, "depth": epoch.depth, "ops_per_edge": ops_per_edge,
                     "seconds": now - last, "peak_rss_mb": peak_rss_mb(), "val_acc": epoch.val_acc})
        last = now

    SearchRun(config, data).run(on_epoch_end=record)
    return rows, baseline


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = common.parser(__doc__).parse_args(argv)
    plan = common.budget(args.smoke)
    rows = []
    with common.Experiment("search_cost", args) as exp:
        for seed in common.seeds(args):
            config = plan.search.with_overrides(seed=seed)
            with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
                epochs, baseline = pool.submit(timed_search, config).result()
            per_stage = pd.DataFrame(epochs).groupby("stage").agg(
                depth=("depth", "first"), ops_per_edge=("ops_per_edge", "first"), epochs=("seconds", "size"),
                seconds=("seconds", "sum"), peak_rss_mb=("peak_rss_mb", "max"), val_acc=("val_acc", "last"))
            with exp.child(f"search-cost-seed{seed}", "search", config.to_dict()) as run_id:
                for stage, row in per_stage.iterrows():
                    tracking.log_metrics(exp.client, run_id, {"stage_seconds": row.seconds,
                                                                     "stage_peak_rss_mb": row.peak_rss_mb}, step=stage)
            rows += [{"seed": seed, "stage": stage, **row, "rss_before_mb": baseline}
                     for stage, row in per_stage.iterrows()]
        table = pd.DataFrame(rows)
        totals = table.groupby("seed")["seconds"].sum()
        summary = common.mean_std(table, ["stage", "depth", "ops_per_edge", "epochs"], ["seconds", "peak_rss_mb"])
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.bar(summary["stage"].astype(str), summary["seconds_mean"], yerr=summary["seconds_std"].fillna(0), capsize=4)
        ax.set(xlabel="stage", ylabel="wall seconds", title=f"search cost per stage (total {totals.mean():.0f} s)")
        exp.write(table, summary, fig, {"total_seconds_mean": totals.mean(), "total_seconds_std": totals.std(),
                                        "rss_before_search_mb": table["rss_before_mb"].mean()})
    return table


if __name__ == "__main__":
    main()
