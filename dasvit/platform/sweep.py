"""The sweep: Ray Tune + Optuna (seeded TPE) over the fairness lambda and the keep ratio r, ASHA early stopping,
each trial a Ray Train search run, everything tracked in MLflow, then the top-k genotypes retrained in parallel.

Entry point of ``experiments/sweep.py``. Under ``ray submit`` it joins the running cluster; on a laptop it starts
a local Ray with the dashboard on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import optuna
import pandas as pd
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from dasvit.config import ConfigError
from dasvit.data import DataError, load_data
from dasvit.io import atomic_write_text
from dasvit.platform import tracking
from dasvit.platform.config import SweepConfig
from dasvit.platform.interrupt import Interrupt
from dasvit.platform.ray_session import connect_ray
from dasvit.platform.retrain_jobs import retrain_top, top_search_runs
from dasvit.platform.trial import TrialSetup, search_trial

STATE_FILE = "dasvit_sweep.json"
OBJECTIVE2_METRIC = {"params": "genotype_params", "macs": "genotype_macs"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweep.py", description=__doc__)
    parser.add_argument("--config", help="sweep YAML (default: the packaged laptop default)")
    parser.add_argument("--num-trials", type=int)
    parser.add_argument("--workers", type=int, help="Ray Train workers per trial")
    parser.add_argument("--experiment", help="MLflow experiment name")
    parser.add_argument("--epochs", type=int, help="epochs of every search stage")
    parser.add_argument("--top-k", type=int, help="genotypes to retrain after the sweep (0: none)")
    parser.add_argument("--retrain-epochs", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--workdir", default=".", help="where mlflow.db, mlartifacts/ and ray_results/ go (default .)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                        "sqlite:///<workdir>/mlflow.db)")
    parser.add_argument("--storage-path", help="Ray Tune/Train storage: shared path or s3:// URI on a cluster")
    parser.add_argument("--address", help="Ray cluster address; 'local' starts a new local one (default: join a "
                        "running cluster, else start one)")
    parser.add_argument("--name", help="sweep name (default: <experiment>-<timestamp>)")
    parser.add_argument("--resume", nargs="?", const="latest", metavar="NAME",
                        help="resume an interrupted sweep (default: the latest under the storage path)")
    return parser


def load_config(args: argparse.Namespace) -> SweepConfig:
    config = SweepConfig.load(args.config)
    data = config.to_dict()
    overrides = {"num_trials": args.num_trials, "workers_per_trial": args.workers, "experiment": args.experiment,
                 "seed": args.seed}
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.epochs is not None:
        stages = data["search"].get("stages") or [vars(s) for s in config.base_search().stages]
        data["search"] = {**data["search"], "stages": [{**s, "epochs": args.epochs} for s in stages]}
    retrain = {"top_k": args.top_k, "epochs": args.retrain_epochs}
    data["retrain"] = {**data["retrain"], **{k: v for k, v in retrain.items() if v is not None}}
    return SweepConfig.from_dict(data)


def param_space(config: SweepConfig) -> dict[str, Any]:
    """Optuna's space: ints uniform over integers, learning rates log-uniform, the rest uniform."""
    space = {}
    for name, bounds in config.tune.items():
        low, high = bounds["low"], bounds["high"]
        if name in ("embed_dim", "batch_size"):
            space[name] = tune.randint(int(low), int(high) + 1)
        elif name.endswith("lr"):
            space[name] = tune.loguniform(low, high)
        else:
            space[name] = tune.uniform(low, high)
    return space


def make_tuner(config: SweepConfig, name: str, storage_path: str, setup: TrialSetup) -> tune.Tuner:
    metrics, modes = [config.metric], ["max"]
    if config.objective2:
        metrics.append(OBJECTIVE2_METRIC[config.objective2])
        modes.append("min")
    study_storage = optuna.storages.RDBStorage(f"sqlite:///{Path(storage_path) / f'{name}-optuna.db'}")
    searcher = OptunaSearch(
        metric=metrics if len(metrics) > 1 else metrics[0], mode=modes if len(modes) > 1 else modes[0],
        sampler=optuna.samplers.TPESampler(seed=config.seed), study_name=name, storage=study_storage,
    )
    scheduler = ASHAScheduler(
        # rungs by the trial's own epoch count: Tune's training_iteration restarts at 1 after a restore
        time_attr="epochs_done", metric=config.metric, mode="max", max_t=config.total_epochs,
        grace_period=config.asha.grace_period, reduction_factor=config.asha.reduction_factor, stop_last_trials=False,
    )
    return tune.Tuner(
        trainable(setup),
        param_space=param_space(config),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=config.num_trials,
                                    max_concurrent_trials=config.max_concurrent_trials),
        run_config=tune.RunConfig(name=name, storage_path=storage_path, verbose=1),
    )


def trainable(setup: TrialSetup) -> Any:
    # The trial driver holds no CPU: its Train workers do. With a CPU it deadlocks a 2-core machine.
    return tune.with_resources(tune.with_parameters(search_trial, setup=setup), {"cpu": 0, "memory": 256 * 2**20})


def genotype_id(run_id: str, client: Any) -> str:
    try:
        genotype = tracking.load_genotype_artifact(client, run_id)
    except ConfigError:
        return ""
    return hashlib.sha1(json.dumps(genotype["blocks"], sort_keys=True).encode()).hexdigest()[:10]


def results_table(results: tune.ResultGrid, client: Any, tuned: list[str], total_epochs: int) -> pd.DataFrame:
    """One row per trial: the values Optuna chose, the last reported metrics, and how the trial ended."""
    rows = []
    for result in results:
        metrics = result.metrics or {}
        run_id = metrics.get("mlflow_run_id", "")
        epochs = int(metrics.get("epochs_done", 0))  # not Tune's training_iteration: it restarts at 1 after a restore
        status = "error" if result.error else ("finished" if epochs >= total_epochs else "early_stopped")
        rows.append({
            "trial_id": metrics.get("trial_id", ""), **{name: result.config.get(name) for name in tuned},
            "val_acc": metrics.get("val_acc"), "params": metrics.get("genotype_params"),
            "macs": metrics.get("genotype_macs"), "epochs": epochs, "genotype_id": genotype_id(run_id, client) if run_id else "",
            "status": status, "search_run_id": run_id,
        })
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    workdir = Path(args.workdir).resolve()
    try:
        config = load_config(args)
        load_data(config.data)  # fail here, not in each trial
        tracking_uri = tracking.resolve_uri(args.tracking_uri, workdir)
        if tracking_uri == tracking.default_tracking_uri(workdir):
            workdir.mkdir(parents=True, exist_ok=True)
        tracking.check_reachable(tracking_uri)
    except (ConfigError, DataError) as err:
        print(f"sweep.py: error: {err}", file=sys.stderr)
        return 2
    storage_path = args.storage_path or str(workdir / "ray_results")
    if "://" not in storage_path:
        Path(storage_path).mkdir(parents=True, exist_ok=True)
    client = tracking.client_for(tracking_uri)
    experiment_id = tracking.ensure_experiment(client, config.experiment,
                                               workdir / "mlartifacts" if tracking_uri.startswith("sqlite") else None)
    dashboard = connect_ray(args.address)
    print(f"Ray dashboard: {dashboard}\nMLflow: mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1")
    with Interrupt() as interrupt:  # after ray.init, whose own SIGTERM handler would otherwise kill the driver
        return run_sweep(args, argv, config, client, experiment_id, tracking_uri, storage_path, workdir, interrupt)


def run_sweep(args: argparse.Namespace, argv: Sequence[str] | None, config: SweepConfig, client: Any,
              experiment_id: str, tracking_uri: str, storage_path: str, workdir: Path, interrupt: Interrupt) -> int:
    """Tune phase, then retraining, then the results table; stops early (exit 130/143) on an interrupt."""
    name, parent_run_id, tuner = resume_or_start(args, config, client, experiment_id, tracking_uri, storage_path)
    start = time.perf_counter()
    results = tuner.fit() if interrupt.signum is None else None
    if interrupt.signum is not None:
        return stop_interrupted(interrupt, client, experiment_id, parent_run_id, name, argv)
    tuned = list(config.tune)
    table = results_table(results, client, tuned, config.total_epochs)
    tracking.close_dangling_runs(
        client, experiment_id, parent_run_id,
        {row.trial_id: "FAILED" for row in table.itertuples() if row.status == "error"},
    )
    if config.retrain.top_k > 0:
        candidates = top_search_runs(tracking_uri, experiment_id, config.retrain.top_k, parent_run_id)
        retrained = retrain_top(candidates, tracking_uri=tracking_uri, experiment_id=experiment_id, data=config.data,
                                epochs=config.retrain.epochs, seed=config.seed, cpus=config.retrain.cpus,
                                gpus=config.retrain.gpus, parent_run_id=parent_run_id, precision=config.precision,
                                stop=lambda: interrupt.signum is not None)
        if interrupt.signum is not None:
            return stop_interrupted(interrupt, client, experiment_id, parent_run_id, name, argv)
        table = table.merge(retrained[["search_run_id", "test_acc", "retrain_run_id"]], on="search_run_id", how="left")
    table = table.sort_values("val_acc", ascending=False, na_position="last")
    csv_path = Path(storage_path) / f"{name}-results.csv" if "://" not in storage_path else workdir / f"{name}-results.csv"
    atomic_write_text(csv_path, table.to_csv(index=False))
    client.log_artifact(parent_run_id, str(csv_path))
    tracking.log_metrics(client, parent_run_id, {"sweep_seconds": time.perf_counter() - start,
                                                  "best_val_acc": float(table["val_acc"].max())}, step=0)
    failed = int((table["status"] == "error").sum())
    tracking.end_run(client, parent_run_id, "FINISHED")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.drop(columns=["search_run_id", "retrain_run_id"], errors="ignore").to_string(index=False))
    print(f"results: {csv_path}" + (f"\n{failed} trial(s) failed: see their MLflow runs (status FAILED)" if failed else ""))
    print(f"next: mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1, experiment {config.experiment!r}, "
          f"sweep run {parent_run_id} (search_run_id / retrain_run_id columns of the CSV name each trial's runs)")
    return 0


def stop_interrupted(interrupt: Interrupt, client: Any, experiment_id: str, parent_run_id: str, name: str,
                     argv: Sequence[str] | None) -> int:
    """After Ctrl-C / SIGTERM: every run still RUNNING ends KILLED with ``status=interrupted``, the sweep's own run
    too, and the console says how to go on. Exit 130 (SIGINT) or 143 (SIGTERM)."""
    tracking.close_dangling_runs(client, experiment_id, parent_run_id, {}, killed_status="interrupted")
    tracking.end_run(client, parent_run_id, "KILLED")
    client.set_tag(parent_run_id, "status", "interrupted")
    kept = " ".join(_without_name_flags(list(argv if argv is not None else sys.argv[1:])))
    print(f"sweep {name} interrupted by {interrupt.name}: nothing more was started or retrained.\n"
          f"resume it with: python experiments/sweep.py {kept + ' ' if kept else ''}--resume {name}", flush=True)
    return interrupt.exit_code


def _without_name_flags(flags: list[str]) -> list[str]:
    """The command-line flags less ``--name X`` and ``--resume [X]``, to print the resume command."""
    kept, k = [], 0
    while k < len(flags):
        if flags[k] in ("--name", "--resume"):
            k += 2 if k + 1 < len(flags) and not flags[k + 1].startswith("--") else 1
            continue
        kept.append(flags[k])
        k += 1
    return kept


def resume_or_start(args: argparse.Namespace, config: SweepConfig, client: Any, experiment_id: str, tracking_uri: str,
                    storage_path: str) -> tuple[str, str, tune.Tuner]:
    """A new sweep (with its MLflow parent run), or the interrupted one ``--resume`` names, restored from storage."""
    state_dir = Path(storage_path) if "://" not in storage_path else Path(args.workdir).resolve()
    if args.resume:
        states = sorted(state_dir.glob(f"*-{STATE_FILE}"), key=lambda p: p.stat().st_mtime)
        wanted = [p for p in states if args.resume in ("latest", p.name[: -len(STATE_FILE) - 1])]
        if not wanted:
            raise SystemExit(f"sweep.py: error: no sweep {args.resume!r} to resume under {state_dir}")
        state = json.loads(wanted[-1].read_text())
        name, parent_run_id = state["name"], state["parent_run_id"]
        client.update_run(parent_run_id, status="RUNNING")
        path = f"{storage_path.rstrip('/')}/{name}"
        tuner = tune.Tuner.restore(path, trainable=trainable(TrialSetup.from_dict(state["setup"])), resume_unfinished=True,
                                   resume_errored=False)
        print(f"resuming sweep {name}")
        return name, parent_run_id, tuner
    name = args.name or f"{config.experiment}-{time.strftime('%Y%m%d-%H%M%S')}"
    parent_run_id = tracking.start_run(client, experiment_id, name, "sweep", tags={"dataset": config.data.dataset})
    tracking.log_params(client, parent_run_id, tracking.flatten("", config.to_dict()))
    setup = TrialSetup(
        search=config.base_search(), workers_per_trial=config.workers_per_trial,
        cpus_per_worker=config.cpus_per_worker, gpus_per_worker=config.gpus_per_worker, tracking_uri=tracking_uri,
        experiment_id=experiment_id, parent_run_id=parent_run_id, storage_path=storage_path,
        max_failures=config.max_failures, precision=config.precision, fused=config.fused,
    )
    atomic_write_text(state_dir / f"{name}-{STATE_FILE}",
                      json.dumps({"name": name, "parent_run_id": parent_run_id, "setup": setup.to_dict()}, indent=2))
    return name, parent_run_id, make_tuner(config, name, storage_path, setup)
