"""Running a sweep: Ray Tune + Optuna (seeded TPE) over the fairness lambda and the keep ratio r, ASHA early
stopping, each trial a Ray Train search run, everything tracked in MLflow, then the top-k genotypes retrained in
parallel. ``dasvit.platform.sweep`` parses and validates the command line first and imports this module only then.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from mlflow.exceptions import MlflowException
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from dasvit.config import ConfigError
from dasvit.data import DataError, ImageData, load_data
from dasvit.genotype import blocks_id
from dasvit.io import atomic_write_text
from dasvit.platform import model_store, study_report, sweep_state, tracking
from dasvit.platform.cluster_check import alive_nodes, check_shared
from dasvit.platform.config import INTEGER_TUNABLE, SweepConfig
from dasvit.platform.interrupt import Interrupt
from dasvit.platform.pareto import pareto_mask, plot_pareto
from dasvit.platform.ray_session import connect_ray, release_leftover_placement_groups
from dasvit.platform.retrain_jobs import retrain_top, top_search_runs
from dasvit.platform.sweep_state import SweepState, optuna_path
from dasvit.platform.trial import DataHandle, TrialSetup, search_trial
from dasvit.vocabulary import objective_spec

OBJECTIVE_METRIC = "objective"  # what each trial reports (dasvit.platform.trial_score), within any MACs budget
COST_METRIC = {"params": "genotype_params", "macs": "genotype_macs"}


def param_space(config: SweepConfig) -> dict[str, Any]:
    """Optuna's space: ints uniform over low, low + step, ..., high; learning rates log-uniform; the rest uniform."""
    space = {}
    for name, bounds in config.tune.items():
        low, high = bounds["low"], bounds["high"]
        if name in INTEGER_TUNABLE:
            space[name] = tune.qrandint(low, high, bounds.get("step", 1))  # Optuna: IntDistribution(low, high, step)
        elif name.endswith("lr"):
            space[name] = tune.loguniform(low, high)
        else:
            space[name] = tune.uniform(low, high)
    return space


def make_tuner(config: SweepConfig, name: str, storage_path: str, study_path: Path, setup: TrialSetup,
               data: DataHandle) -> tune.Tuner:
    metrics, modes = [OBJECTIVE_METRIC], ["max"]
    if config.cost:
        metrics.append(COST_METRIC[config.cost])
        modes.append("min")
    study_storage = optuna.storages.RDBStorage(f"sqlite:///{study_path}")
    searcher = OptunaSearch(
        metric=metrics if len(metrics) > 1 else metrics[0], mode=modes if len(modes) > 1 else modes[0],
        sampler=make_sampler(config), study_name=name, storage=study_storage,
    )
    return tune.Tuner(
        trainable(setup, data),
        param_space=param_space(config),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(config), num_samples=config.num_trials,
                                    max_concurrent_trials=config.max_concurrent_trials),
        run_config=tune.RunConfig(name=name, storage_path=storage_path, verbose=1),
    )


def make_sampler(config: SweepConfig) -> optuna.samplers.TPESampler:
    """Seeded TPE: its first ``startup_trials`` proposals are random draws, the rest model the trials so far (a sweep
    of fewer trials than that is a random search over the space)."""
    return optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=config.startup_trials)


def make_scheduler(config: SweepConfig) -> ASHAScheduler:
    # Rungs by the trial's own epoch count: Tune's training_iteration restarts at 1 after a restore, so a restored
    # trial would be compared with the others at the wrong rung.
    return ASHAScheduler(
        time_attr="epochs_done", metric=OBJECTIVE_METRIC, mode="max", max_t=config.total_epochs,
        grace_period=config.asha.grace_period, reduction_factor=config.asha.reduction_factor, stop_last_trials=False,
    )


# The trial driver holds no CPU: its Train workers do. With a CPU it deadlocks a 2-core machine.
TRIAL_DRIVER_RESOURCES = {"cpu": 0, "memory": 256 * 2**20}


def trainable(setup: TrialSetup, data: DataHandle) -> Any:
    """The trial driver, with the data set the sweep loaded once handed over through Ray's object store."""
    return tune.with_resources(tune.with_parameters(search_trial, setup=setup, data=data), TRIAL_DRIVER_RESOURCES)


def genotype_id(run_id: str, client: Any) -> str:
    try:
        genotype = tracking.selected_genotype(client, run_id)
    except ConfigError:
        return ""
    return blocks_id(genotype["blocks"])


def results_table(results: tune.ResultGrid, client: Any, tuned: list[str], total_epochs: int) -> pd.DataFrame:
    """One row per trial: the values Optuna chose, the last reported metrics, and how the trial ended."""
    rows = []
    for result in results:
        metrics = result.metrics or {}
        run_id = metrics.get("mlflow_run_id", "")
        # not Tune's training_iteration (it restarts at 1 after a restore); MLflow's count where the trial logged
        # epochs after the report that ASHA stopped it on (the stop reaches it asynchronously)
        epochs = max(int(metrics.get("epochs_done", 0)), tracking.logged_epochs(client, run_id) if run_id else 0)
        status = "error" if result.error else ("finished" if epochs >= total_epochs else "early_stopped")
        rows.append({
            "trial_id": metrics.get("trial_id", ""), **{name: result.config.get(name) for name in tuned},
            "objective": metrics.get(OBJECTIVE_METRIC), "proxy_val_acc": metrics.get("proxy_val_acc"),
            "val_acc": metrics.get("val_acc"), "params": metrics.get("genotype_params"),
            "macs": metrics.get("genotype_macs"), "epochs": epochs,
            "genotype_id": genotype_id(run_id, client) if run_id else "",
            "status": status, "search_run_id": run_id,
        })
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class SweepPlan:
    """Everything checked before Ray starts, so that bad input exits 2 having written nothing but the store."""

    config: SweepConfig
    client: Any
    experiment_id: str
    tracking_uri: str
    storage_path: str
    state_dir: Path  # the sweep's state file, Optuna study and results table: always on local disk
    name: str
    resumed: SweepState | None
    data: ImageData  # loaded once here; trials and retrainings get it through the object store


def plan_sweep(args: argparse.Namespace, config: SweepConfig) -> SweepPlan:
    workdir = Path(args.workdir).resolve()
    data = load_data(config.data)  # fail here, not in each trial
    tracking_uri = tracking.resolve_uri(args.tracking_uri, workdir)
    if tracking_uri == tracking.default_tracking_uri(workdir):
        workdir.mkdir(parents=True, exist_ok=True)
    with tracking.store_lock(tracking_uri):  # sweeps started together in a fresh folder share its creation
        tracking.check_reachable(tracking_uri)
        client = tracking.client_for(tracking_uri)
        experiment_id = tracking.ensure_experiment(
            client, config.experiment, workdir / "mlartifacts" if tracking_uri.startswith("sqlite") else None)
    storage_path = args.storage_path or str(workdir / "ray_results")
    state_dir = Path(storage_path) if "://" not in storage_path else workdir
    resumed = sweep_state.find_resumable(state_dir, args.resume, client) if args.resume else None
    name = resumed.name if resumed else sweep_state.claim_name(
        state_dir, args.name, f"{config.experiment}-{time.strftime('%Y%m%d-%H%M%S')}")
    return SweepPlan(config, client, experiment_id, tracking_uri, storage_path, state_dir, name, resumed, data)


def run(args: argparse.Namespace, config: SweepConfig, argv: Sequence[str] | None) -> int:
    """Check what needs the data, the store and the sweep state (exit 2 when bad), then start Ray and sweep."""
    try:
        plan = plan_sweep(args, config)
    except (ConfigError, DataError) as err:
        print(f"sweep.py: error: {err}", file=sys.stderr)
        return 2
    dashboard = connect_ray(args.address)
    try:
        check_shared(plan.storage_path, plan.tracking_uri, alive_nodes())
    except ConfigError as err:
        if plan.resumed is None:  # the name claimed by plan_sweep: nothing of this sweep stays behind
            sweep_state.state_path(plan.state_dir, plan.name).unlink(missing_ok=True)
        print(f"sweep.py: error: {err}", file=sys.stderr)
        return 2
    print(f"Ray dashboard: {dashboard}\nMLflow: mlflow ui --backend-store-uri {plan.tracking_uri} --host 127.0.0.1")
    with Interrupt() as interrupt:  # after ray.init, whose own SIGTERM handler would otherwise kill the driver
        return run_sweep(plan, argv, interrupt)


def run_sweep(plan: SweepPlan, argv: Sequence[str] | None, interrupt: Interrupt) -> int:
    """Tune phase, then retraining, then the results table; stops early (exit 130/143) on an interrupt."""
    config, client = plan.config, plan.client
    data = DataHandle.put(plan.data)  # one copy in the object store for every trial, worker and retraining
    parent_run_id, tuner = resume_or_start(plan, data)
    start = time.perf_counter()
    results = tuner.fit() if interrupt.signum is None else None
    if interrupt.signum is not None:
        return stop_interrupted(interrupt, plan, parent_run_id, argv)
    tuned = list(config.tune)
    table = results_table(results, client, tuned, config.total_epochs)
    tracking.close_dangling_runs(
        client, plan.experiment_id, parent_run_id,
        {row.trial_id: "FAILED" for row in table.itertuples() if row.status == "error"}, total_epochs=config.total_epochs,
    )
    if config.retrain.top_k > 0:
        released = release_leftover_placement_groups()  # else a stopped trial's CPUs can starve the retraining
        if released:
            print(f"released {released} placement group(s) left by stopped trials")
        candidates = top_search_runs(plan.tracking_uri, plan.experiment_id, config.retrain.top_k, parent_run_id)
        retrained = retrain_top(candidates, tracking_uri=plan.tracking_uri, experiment_id=plan.experiment_id,
                                data=config.data, data_ref=data.ref, epochs=config.retrain.epochs, seed=config.seed,
                                cpus=config.retrain.cpus, gpus=config.retrain.gpus, parent_run_id=parent_run_id,
                                precision=config.precision, stop=lambda: interrupt.signum is not None)
        if interrupt.signum is not None:
            return stop_interrupted(interrupt, plan, parent_run_id, argv)
        table = table.merge(retrained[["search_run_id", "selection_acc", "test_acc", "retrain_run_id"]],
                            on="search_run_id", how="left")
    estimate = accuracy_estimate(config.objective)
    table["pareto"] = pareto_mask(table, estimate, "macs")
    table = table.sort_values(OBJECTIVE_METRIC, ascending=False, na_position="last")
    if "retrain_run_id" in table and table["retrain_run_id"].notna().any():
        register_best(client, config.experiment, table, parent_run_id)
    csv_path = plan.state_dir / f"{plan.name}-results.csv"
    atomic_write_text(csv_path, table.to_csv(index=False))
    client.log_artifact(parent_run_id, str(csv_path))
    client.log_figure(parent_run_id, plot_pareto(table, config.max_macs, estimate), "plots/pareto.png")
    importances = study_report.report(client, parent_run_id, optuna_path(plan.state_dir, plan.name), plan.name)
    tracking.log_metrics(client, parent_run_id, {"sweep_seconds": time.perf_counter() - start,
                                                  "best_objective": float(table[OBJECTIVE_METRIC].max()),
                                                  "best_val_acc": float(table["val_acc"].max())}, step=0)
    failed = int((table["status"] == "error").sum())
    tracking.end_run(client, parent_run_id, "FINISHED")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        unused = [c for c in ("proxy_val_acc", "selection_acc") if c in table and table[c].isna().all()]
        print(table.drop(columns=["search_run_id", "retrain_run_id", *unused], errors="ignore").to_string(index=False))
    print(importances)
    print(f"results: {csv_path}" + (f"\n{failed} trial(s) failed: see their MLflow runs (status FAILED)" if failed else ""))
    print(f"next: mlflow ui --backend-store-uri {plan.tracking_uri} --host 127.0.0.1, experiment "
          f"{config.experiment!r}, sweep run {parent_run_id} (search_run_id / retrain_run_id columns of the CSV name "
          "each trial's runs)")
    return 0


def accuracy_estimate(objective: str) -> str:
    """The column that estimates each trial's accuracy, for the Pareto front against MACs: the objective where it is
    an accuracy (``ObjectiveSpec.accuracy``), else the supernet's search-val accuracy (every trial has one)."""
    return OBJECTIVE_METRIC if objective_spec(objective).accuracy else "val_acc"


def champion_row(table: pd.DataFrame) -> pd.Series:
    """The retrained trial to hand back: the best retrained accuracy on the selection split where the data set holds
    one out, else the first retrained trial by the objective (``table`` is sorted by it). Never test accuracy."""
    retrained = table[table["retrain_run_id"].notna()]
    if "selection_acc" in retrained and retrained["selection_acc"].notna().any():
        return retrained.loc[retrained["selection_acc"].idxmax()]
    return retrained.iloc[0]


def register_best(client: Any, name: str, table: pd.DataFrame, parent_run_id: str) -> None:
    """Register the champion (``champion_row``) as the ``champion`` of the registered model ``name``. A store
    without a model registry is reported once and the sweep goes on: the model stays logged with its retraining run."""
    best = champion_row(table)
    tags = {model_store.SWEEP_TAG: parent_run_id, "genotype_id": best["genotype_id"], "trial_id": best["trial_id"],
            "objective": best[OBJECTIVE_METRIC], "test_acc": best["test_acc"], "macs": best["macs"]}
    try:
        version = model_store.register_champion(client, name, best["retrain_run_id"], tags)
    except MlflowException as err:
        print(f"the champion is not registered (this MLflow store has no usable model registry: {err}); its model "
              f"is logged with retraining run {best['retrain_run_id']}", flush=True)
        return
    print(f"champion: models:/{name}@{model_store.CHAMPION} (version {version}, trial {best['trial_id']}, "
          f"genotype {best['genotype_id']})", flush=True)


def stop_interrupted(interrupt: Interrupt, plan: SweepPlan, parent_run_id: str, argv: Sequence[str] | None) -> int:
    """After Ctrl-C / SIGTERM: every run still RUNNING ends KILLED with ``status=interrupted``, the sweep's own run
    too, and the console says how to go on. Exit 130 (SIGINT) or 143 (SIGTERM)."""
    tracking.close_dangling_runs(plan.client, plan.experiment_id, parent_run_id, {}, killed_status="interrupted")
    tracking.end_run(plan.client, parent_run_id, "KILLED")
    plan.client.set_tag(parent_run_id, "status", "interrupted")
    kept = " ".join(_without_name_flags(list(argv if argv is not None else sys.argv[1:])))
    print(f"sweep {plan.name} interrupted by {interrupt.name}: nothing more was started or retrained.\n"
          f"resume it with: python experiments/sweep.py {kept + ' ' if kept else ''}--resume {plan.name}", flush=True)
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


def resume_or_start(plan: SweepPlan, data: DataHandle) -> tuple[str, tune.Tuner]:
    """The sweep's MLflow parent run and tuner: restored from storage when resuming, else new."""
    config, client, name, resumed = plan.config, plan.client, plan.name, plan.resumed
    if resumed is not None:
        client.update_run(resumed.parent_run_id, status="RUNNING")
        tuner = tune.Tuner.restore(f"{plan.storage_path.rstrip('/')}/{name}", resume_unfinished=True, resume_errored=False,
                                   trainable=trainable(TrialSetup.from_dict(resumed.setup), data))
        print(f"resuming sweep {name}")
        return resumed.parent_run_id, tuner
    parent_run_id = tracking.start_run(client, plan.experiment_id, name, "sweep", tags={"dataset": config.data.dataset})
    tracking.log_params(client, parent_run_id, tracking.flatten("", config.to_dict()))
    setup = TrialSetup(
        search=config.base_search(), workers_per_trial=config.workers_per_trial,
        cpus_per_worker=config.cpus_per_worker, gpus_per_worker=config.gpus_per_worker, tracking_uri=plan.tracking_uri,
        experiment_id=plan.experiment_id, parent_run_id=parent_run_id, storage_path=plan.storage_path,
        max_failures=config.max_failures, precision=config.precision, fused=config.fused,
        objective=config.objective, proxy_epochs=config.proxy_epochs, max_macs=config.max_macs,
    )
    sweep_state.write_state(plan.state_dir, SweepState(name, parent_run_id, setup.to_dict()))
    return parent_run_id, make_tuner(config, name, plan.storage_path, optuna_path(plan.state_dir, name), setup,
                                     data)
