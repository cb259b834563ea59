"""Ray overhead: the same K search trials through the Ray Tune/Train sweep vs in-process, one after another.

The sweep runs first (``dasvit.platform.sweep.main``: local Ray start, MLflow logging, checkpoints, no early
stopping, no retraining), with one Ray Train worker of all the machine's CPUs per trial; then the same
(lambda, r) pairs Optuna chose run as plain ``SearchRun``s in this process with as many torch threads. The
difference is what Ray, Tune, Train and the tracking cost. Wall times include everything the user waits for.
Each trial logs its parts (``overhead_*_s``: worker-group start with the worker's imports, data loading, model
build, MLflow logging, checkpointing, reports, genotype sizing, teardown) and each epoch's search time to MLflow;
this script adds Ray's start, the import time of the trial module in a fresh interpreter, and the floor of Ray
Train itself (a Tune trial whose TorchTrainer of as many workers does nothing), and splits the per-trial overhead
into those parts. While that empty trial runs, a sampler reads the title of every new process from ``/proc``
(Ray names each actor's process ``ray::Class.method``), so the floor is also broken into the processes it starts,
one after another: when each appeared, when it began its actor's work, and when it ended (``empty_trial_processes``;
Linux only, empty elsewhere).

    python benchmarks/ray_overhead.py                 # K = 2 trials of 1.5-2 minutes each on 2 CPU cores
    python benchmarks/ray_overhead.py --epochs 1 --trials 2 --out /tmp/smoke   # smoke size

``--workers 2`` runs each trial as the default sweep does on 2 cores: 2 data-parallel Train workers of 1 CPU (and
1 torch thread) each, against the same in-process runs with 2 threads. That ratio is what a user of the default
sweep pays over running the same searches by hand; it folds the data-parallel speed-up into the comparison, so
the like-for-like overhead is the 1-worker figure. The 2 shards see the data in another order, so their val
accuracies differ from the in-process ones.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

import pandas as pd
import ray
import torch
import yaml
from ray import tune
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from dasvit.config import DataConfig, SearchConfig
from dasvit.data import load_data
from dasvit.platform import tracking
from dasvit.platform.ray_session import connect_ray
from dasvit.platform.sweep import main as sweep_main
from dasvit.platform.sweep_run import TRIAL_DRIVER_RESOURCES
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.search import SearchRun

RESULTS = Path(__file__).parent / "results"


def sweep_config(trials: int, epochs: int, cpus: int, seed: int, dataset: str, workers: int = 1) -> dict:
    stages = [{"depth": s.depth, "epochs": epochs, "ops": s.ops} for s in SearchConfig().stages]
    return {
        "experiment": "ray-overhead", "num_trials": trials, "workers_per_trial": workers,
        "cpus_per_worker": cpus // workers,
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
    parser.add_argument("--workers", type=int, default=1,
                        help="Train workers per trial, sharing the machine's CPUs (the default sweep: 2)")
    parser.add_argument("--tag", default="ray_overhead", help="results file stem")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cpus = os.cpu_count() or 1
    if not 1 <= args.workers <= cpus:
        parser.error(f"--workers {args.workers}: must be between 1 and the {cpus} CPUs of this machine")
    config = sweep_config(args.trials, args.epochs, cpus, args.seed, args.dataset, args.workers)

    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "sweep.yaml"
        path.write_text(yaml.safe_dump(config))
        start = time.perf_counter()
        assert sweep_main(["--config", str(path), "--workdir", workdir, "--name", "overhead", "--address", "local"]) == 0
        sweep_seconds = time.perf_counter() - start
        trials = pd.read_csv(Path(workdir) / "ray_results" / "overhead-results.csv")
        parts = trial_parts(Path(workdir), list(trials["search_run_id"]))
        ray.shutdown()
        ray_start_seconds, train_floor_seconds, floor_processes = ray_start_and_train_floor(Path(workdir), args.workers)
    driver_import_seconds, worker_import_seconds = trial_import_seconds()

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
        "workers_per_trial": config["workers_per_trial"], "cpus_per_worker": config["cpus_per_worker"],
        "sweep_s": sweep_seconds, "inprocess_s": inprocess_seconds, "ratio": sweep_seconds / inprocess_seconds,
        "overhead_per_trial_s": (sweep_seconds - inprocess_seconds) / args.trials,
        "mean_trial_inprocess_s": inprocess_seconds / args.trials,
        "ray_start_s": ray_start_seconds, "trial_driver_import_s": driver_import_seconds,
        "trial_worker_import_s": worker_import_seconds,
        "empty_train_trial_s": train_floor_seconds,
        "parts_per_trial_s": parts.mean().to_dict(),
        "empty_trial_processes": floor_processes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / f"{args.tag}.csv", index=False)
    (args.out / f"{args.tag}.json").write_text(json.dumps({"summary": summary, "trials": rows}, indent=2))
    print(json.dumps(summary, indent=2))
    return table


def trial_parts(workdir: Path, run_ids: list[str]) -> pd.DataFrame:
    """Per trial: its logged ``overhead_*_s`` parts and the seconds its search epochs took inside Ray."""
    client = tracking.client_for(tracking.default_tracking_uri(workdir))
    rows = []
    for run_id in run_ids:
        metrics = client.get_run(run_id).data.metrics
        epochs = client.get_metric_history(run_id, "seconds")
        rows.append({**{k.removeprefix("overhead_").removesuffix("_s"): v for k, v in metrics.items()
                        if k.startswith("overhead_")}, "search_epochs": sum(m.value for m in epochs)})
    return pd.DataFrame(rows)


def ray_start_and_train_floor(workdir: Path, workers: int) -> tuple[float, float, list[dict[str, Any]]]:
    """Seconds to start a local Ray (as the sweep does), and for a Tune trial whose TorchTrainer of ``workers``
    workers only reports once: what Ray Train costs per trial before any of our code runs; with the processes that
    trial started (``ProcessTimeline``), in seconds from the trial's submission."""
    start = time.perf_counter()
    connect_ray("local")
    ray_start = time.perf_counter() - start

    def empty_trial(_: dict) -> None:
        TorchTrainer(lambda: ray.train.report({"done": 1}), scaling_config=ScalingConfig(num_workers=workers),
                     run_config=RunConfig(name="empty-train", storage_path=str(workdir / "floor"),
                                          callbacks=[TuneReportCallback()])).fit()

    with ProcessTimeline() as timeline:
        start = time.perf_counter()
        tune.Tuner(tune.with_resources(empty_trial, TRIAL_DRIVER_RESOURCES),  # as the sweep's trials
                   run_config=tune.RunConfig(name="floor", storage_path=str(workdir / "floor"), verbose=0)).fit()
        floor = time.perf_counter() - start
    ray.shutdown()
    return ray_start, floor, timeline.processes()


class ProcessTimeline:
    """Samples ``/proc`` every 50 ms for this process's descendants that start inside the ``with`` block (its local
    Ray's workers, never another program's processes) and the titles they take.

    A Ray worker process is titled ``ray::IDLE`` until it is given an actor or task, then ``ray::Class.method``:
    its first other ``ray::`` title is its role, and when it took it is when the process began working (after its
    start and its imports). Children of those processes (a worker's own forks and subprocesses) are not workers."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.seen: dict[int, list[tuple[float, str]]] = {}
        self.parents: dict[int, int | None] = {}
        self.ended: dict[int, float] = {}
        self.stop = threading.Event()

    def __enter__(self) -> Self:
        self.before = set(self._titles())
        self.root = os.getpid()
        self.start = time.monotonic()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        deadline = time.monotonic() + 3.0  # the trial's processes exit after Tune returns (Ray-wide actors never)
        while time.monotonic() < deadline and self.seen.keys() - self.ended.keys():
            time.sleep(self.interval)
        self.stop.set()
        self.thread.join()

    @staticmethod
    def _titles() -> dict[int, str]:
        titles = {}
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                titles[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").strip()
            except OSError:  # gone between listing and reading
                continue
        return titles

    def _sample(self) -> None:
        while not self.stop.wait(self.interval):
            now, titles = time.monotonic() - self.start, self._titles()
            for pid, title in titles.items():
                if pid in self.before:
                    continue
                if pid not in self.seen:
                    if not self._descends_from_us(pid):
                        self.before.add(pid)  # another program's process: never looked at again
                        continue
                    self.parents[pid] = self._parent(pid)
                events = self.seen.setdefault(pid, [])
                if not events or events[-1][1] != title:
                    events.append((now, title))
            for pid in self.seen.keys() - titles.keys():
                self.ended.setdefault(pid, now)

    def _descends_from_us(self, pid: int) -> bool:
        ancestor: int | None = pid
        while ancestor not in (None, 0, 1):
            if ancestor == self.root:
                return True
            ancestor = self._parent(ancestor)
        return False

    @staticmethod
    def _parent(pid: int) -> int | None:
        try:
            return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone already
            return None

    def processes(self) -> list[dict[str, Any]]:
        """Per new Ray worker process, in order of appearance: its role, and when it appeared, began working and
        ended."""
        rows = []
        for pid, events in sorted(self.seen.items(), key=lambda item: item[1][0][0]):
            working = [(t, title) for t, title in events if title.startswith("ray::") and title != "ray::IDLE"]
            if working and self.parents.get(pid) not in self.seen:
                rows.append({"role": working[0][1].removeprefix("ray::").split(".")[0], "appeared_s": events[0][0],
                             "working_s": working[0][0], "ended_s": self.ended.get(pid)})
        return rows


def trial_import_seconds() -> tuple[float, float]:
    """Import times in a fresh interpreter of what a trial's driver imports (``dasvit.platform.trial``) and of what
    each Train worker imports (``trial_worker``, which imports the driver's module first: so, one interpreter)."""
    code = ("import json, time; start = time.perf_counter(); import dasvit.platform.trial; "
            "driver = time.perf_counter() - start; import dasvit.platform.trial_worker; "
            "print(json.dumps([driver, time.perf_counter() - start]))")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    driver, worker = json.loads(done.stdout.strip().splitlines()[-1])
    return driver, worker


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
