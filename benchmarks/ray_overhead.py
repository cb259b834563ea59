"""Ray overhead: the same K search trials through the Ray Tune/Train sweep vs in-process, one after another.

The sweep runs first (``dasvit.platform.sweep.main``: local Ray start, MLflow logging, checkpoints, no early
stopping, no retraining), with one Ray Train worker of all the machine's CPUs per trial; then the same
(lambda, r) pairs Optuna chose run as plain ``SearchRun``s in this process with as many torch threads. The
difference is what Ray, Tune, Train and the tracking cost. Wall times include everything the user waits for.

    python benchmarks/ray_overhead.py                 # K = 2 trials of 1.5-2 minutes each on 2 CPU cores
    python benchmarks/ray_overhead.py --epochs 1 --trials 2 --out /tmp/smoke   # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray
import torch
import yaml

from dasvit.config import DataConfig, SearchConfig
from dasvit.data import load_data
from dasvit.search import SearchRun
from dasvit.platform.sweep import main as sweep_main

RESULTS = Path(__file__).parent / "results"


def sweep_config(trials: int, epochs: int, cpus: int, seed: int, dataset: str) -> dict:
    stages = [{"depth": s.depth, "epochs": epochs, "ops": s.ops} for s in SearchConfig().stages]
    return {
        "experiment": "ray-overhead", "num_trials": trials, "workers_per_trial": 1, "cpus_per_worker": cpus,
        "seed": seed, "search": {"data": {"dataset": dataset}, "stages": stages, "seed": seed},
        "asha": {"grace_period": 3 * epochs, "reduction_factor": 2},  # never stops a trial early
        "retrain": {"top_k": 0},
    }


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per stage (3 stages)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cpus = os.cpu_count() or 1
    config = sweep_config(args.trials, args.epochs, cpus, args.seed, args.dataset)

    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "sweep.yaml"
        path.write_text(yaml.safe_dump(config))
        start = time.perf_counter()
        assert sweep_main(["--config", str(path), "--workdir", workdir, "--name", "overhead", "--address", "local"]) == 0
        sweep_seconds = time.perf_counter() - start
        trials = pd.read_csv(Path(workdir) / "ray_results" / "overhead-results.csv")
        ray.shutdown()

    torch.set_num_threads(cpus)
    data = load_data(DataConfig(args.dataset))
    base = SearchConfig.from_dict(config["search"])
    rows = []
    inprocess_seconds = 0.0
    for trial in trials.itertuples():
        start = time.perf_counter()
        run = SearchRun(base.with_overrides(fairness_lambda=trial.fairness_lambda, keep_ratio=trial.keep_ratio), data)
        run.run()
        seconds = time.perf_counter() - start
        inprocess_seconds += seconds
        rows.append({"trial_id": trial.trial_id, "fairness_lambda": trial.fairness_lambda,
                     "keep_ratio": trial.keep_ratio, "inprocess_s": seconds,
                     "inprocess_val_acc": run.history[-1].val_acc, "sweep_val_acc": trial.val_acc})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    summary = {
        "device": f"{platform.machine()} CPU, {cpus} cores", "trials": args.trials, "epochs_per_trial": 3 * args.epochs,
        "sweep_s": sweep_seconds, "inprocess_s": inprocess_seconds, "ratio": sweep_seconds / inprocess_seconds,
        "overhead_per_trial_s": (sweep_seconds - inprocess_seconds) / args.trials,
        "mean_trial_inprocess_s": inprocess_seconds / args.trials,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "ray_overhead.csv", index=False)
    (args.out / "ray_overhead.json").write_text(json.dumps({"summary": summary, "trials": rows}, indent=2))
    print(json.dumps(summary, indent=2))
    return table


if __name__ == "__main__":
    main()
