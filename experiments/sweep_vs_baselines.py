"""Does the sweep beat the alternatives at equal compute?

For each seed, four ways to get a network, every final network retrained from scratch with the same recipe (50
epochs, train + search-val, scored once on the test split) and only then compared:
- ``sweep``: the default sweep (``experiments/sweep.py --seed S``, packaged config), its best retrained genotype
  by the sweep's own objective (never by test accuracy);
- ``search``: one default ``dasvit search`` of that seed, its genotype retrained;
- ``random``: random genotypes of the same space (the final stage's depth), each scored by a short proxy
  retraining on the search split, drawn until they have spent the sweep's whole wall time (search and retraining
  phases), the best by proxy score retrained;
- ``cnn``: the small CNN of ``searched_vs_hand.py``.

Compute is counted as core-seconds: wall seconds x the 2 cores that each of these holds on a 2-core machine (the
sweep's Ray workers and tasks, or one process with 2 torch threads).

    python experiments/sweep_vs_baselines.py [--seeds 0,1,2]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import common
import matplotlib.pyplot as plt
import pandas as pd
from random_search import random_search

from dasvit.baselines import SmallCNN
from dasvit.genotype import genotype_from_dict
from dasvit.io import atomic_write_text
from dasvit.platform.config import SweepConfig, tune_values
from dasvit.platform.sweep_run import champion_row
from dasvit.quick_exit import freeze_heap_at_exit

CORES = 2
CNN_WIDTH = 16
SWEEP = Path(__file__).parent / "sweep.py"
SMOKE = Path(__file__).parent / "configs" / "tiny_budget.yaml"  # one smoke sweep serves this script and cnn_gap.py


def run_sweep(exp: common.Experiment, seed: int, smoke: bool, uri: str,
              config: Path | None = None) -> tuple[pd.DataFrame, float]:
    """The sweep as a user runs it (``config``, else the packaged default; the smoke one with ``smoke``), in its own
    process and local Ray; its results table and its wall time."""
    config = SMOKE if smoke else config
    label = f"seed{seed}" + ("-smoke" if smoke else f"-{config.stem}" if config else "")
    workdir = exp.cache / "sweeps" / label
    results = workdir / "ray_results" / "sweep-results.csv"
    timing = workdir / "wall_seconds.txt"
    if not (results.is_file() and timing.is_file()):
        workdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(SWEEP), "--seed", str(seed), "--workdir", str(workdir), "--name", "sweep",
                   "--experiment", f"dasvit-{exp.name.replace('_', '-')}-{label}", "--address", "local",
                   "--tracking-uri", uri, *(["--config", str(config)] if config else [])]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        timing.write_text(f"{time.perf_counter() - start}\n")
    return pd.read_csv(results), float(timing.read_text())


def random_baseline(exp: common.Experiment, plan: common.Budget, sweep: SweepConfig, seed: int,
                    budget_s: float) -> tuple[dict, int]:
    """Random genotypes of the sweep's space (its tuned widths and depths, within its ``max_macs``) drawn until
    ``budget_s`` wall seconds are spent, each scored by a short proxy retraining on the search split
    (``proxy_epochs`` of the sweep config; the search-val half, never the test split); the best retrained with the
    full recipe. The draw is cached per seed, space and budget (its length depends on the clock)."""
    space = {name: tune_values(name, sweep.tune[name]) if name in sweep.tune else [] for name in ("embed_dim", "depth")}
    sized = any(space.values()) or sweep.max_macs is not None
    label = f"-{common.config_key(space, sweep.max_macs)}" if sized else ""
    cached = exp.cache / "random" / f"seed{seed}-{budget_s:.0f}s{label}.json"
    if cached.is_file():
        saved = json.loads(cached.read_text())
        best, tried = genotype_from_dict(saved["genotype"]), saved["tried"]
    else:
        best, log = random_search(exp, plan, seed, budget_s, sweep.proxy_epochs, space["embed_dim"], space["depth"],
                                  sweep.max_macs)
        tried = len(log)
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cached, json.dumps({"genotype": best.to_dict(), "tried": tried}))
    return exp.retrain(f"random-seed{seed}", replace(plan.retrain, seed=seed), genotype=best), tried


def compare(exp: common.Experiment, plan: common.Budget, seed: int, smoke: bool, uri: str,
            trials: list[pd.DataFrame]) -> list[dict]:
    """The four methods' rows for ``seed``; the sweep's per-trial table is appended to ``trials``."""
    sweep_config = SweepConfig.load(SMOKE if smoke else None)
    table, sweep_s = run_sweep(exp, seed, smoke, uri)
    trials.append(table.assign(seed=seed))
    rows = [{"method": "sweep", "seed": seed, **_sized(sweep_pick(table)), "cpu_seconds": CORES * sweep_s,
             "candidates": sweep_config.num_trials}]
    config = replace(plan.retrain, seed=seed)
    search = exp.search(plan.search.with_overrides(seed=seed), f"search-seed{seed}")
    result = exp.retrain(f"search-seed{seed}", config, genotype=search.genotype())
    rows.append({"method": "search", "seed": seed, **_sized(result),
                 "cpu_seconds": CORES * (sum(r.seconds for r in search.history) + result["seconds"]), "candidates": 1})
    result, tried = random_baseline(exp, plan, sweep_config, seed, random_budget(sweep_s, smoke))
    rows.append({"method": "random", "seed": seed, **_sized(result), "cpu_seconds": CORES * (sweep_s + result["seconds"]),
                 "candidates": tried})
    result = small_cnn(exp, plan, seed, smoke)
    rows.append({"method": "cnn", "seed": seed, **_sized(result), "cpu_seconds": CORES * result["seconds"],
                 "candidates": 1})
    return rows


def random_budget(sweep_s: float, smoke: bool) -> float:
    """Random search gets the sweep's wall time; at smoke size none, which still draws (and retrains) one."""
    return 0.0 if smoke else sweep_s


def sweep_pick(table: pd.DataFrame) -> pd.Series:
    """What the sweep hands back: its champion (``dasvit.platform.sweep_run.champion_row``: by retrained selection
    accuracy where the data set holds a selection split out, else by the sweep's own objective; never by test)."""
    return champion_row(table.sort_values("objective", ascending=False))


def small_cnn(exp: common.Experiment, plan: common.Budget, seed: int, smoke: bool) -> dict:
    """The small CNN of ``searched_vs_hand.py`` retrained with the recipe of every other network (cached)."""
    width = 4 if smoke else CNN_WIDTH
    return exp.retrain(f"cnn-seed{seed}", replace(plan.retrain, seed=seed), model_name=f"small_cnn_w{width}",
                       model=lambda data: SmallCNN(data.in_chans, data.num_classes, width))


def _sized(result: dict) -> dict:
    return {"test_acc": result["test_acc"], "params": result["params"], "macs": result["macs"]}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = common.parser(__doc__).parse_args(argv)
    plan = common.budget(args.smoke, args.dataset)
    with common.Experiment("sweep_vs_baselines", args) as exp:
        uri = exp.tracking_uri
        trials: list[pd.DataFrame] = []
        table = pd.DataFrame([row for seed in args.seeds
                              for row in compare(exp, plan, seed, args.smoke, uri, trials)])
        summary = common.mean_std(table, "method", ["test_acc", "params", "macs", "cpu_seconds"])
        summary["min_test_acc"] = table.groupby("method", sort=False)["test_acc"].min().values
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for name, group in table.groupby("method", sort=False):
            ax.scatter(group["macs"], group["test_acc"], label=name)
        ax.set(xscale="log", xlabel="MACs per image", ylabel="test accuracy", title="one point per method and seed")
        ax.legend(fontsize=8)
        exp.write(table, summary, fig, {"rows": table.to_dict(orient="records"), "cores": CORES,
                                        "retrain_epochs": plan.retrain.epochs})
        exp.write_extra("trials.csv", pd.concat(trials).to_csv(index=False))  # every sweep trial, for the reading
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
