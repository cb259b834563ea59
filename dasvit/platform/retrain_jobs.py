"""Retraining the best searched genotypes from scratch, in parallel, as Ray tasks (one GPU each on a cluster).

Each retraining is its own MLflow run, tagged with the search run it came from (``search_run_id``), so the
closing table can put search-val accuracy next to retrained test accuracy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import ray

from dasvit.config import ConfigError, DataConfig, RetrainConfig
from dasvit.data import DataError, ImageData, load_data
from dasvit.genotype import genotype_from_dict
from dasvit.platform import model_store, tracking
from dasvit.platform.ray_session import connect_ray
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.retrain import retrain
from dasvit.vocabulary import objective_names, objective_spec


def top_search_runs(tracking_uri: str, experiment_id: str, k: int, parent_run_id: str | None = None) -> pd.DataFrame:
    """The ``k`` best search runs that logged a genotype, by their objective (``dasvit.platform.trial_score``).

    Runs scored by an objective whose scores compare across stages (``ObjectiveSpec.stage_comparable``: ``params``,
    ``proxy``) compare as they are, finished or stopped early: each score is about the genotype the run hands back.
    Otherwise (``supernet``, or searches that logged no objective) finished searches come first: an early-stopped
    trial's supernet sits at an earlier, shallower stage, and its val accuracy is not comparable with a finished
    search's."""
    client = tracking.client_for(tracking_uri)
    query = f"tags.`{tracking.KIND_TAG}` = 'search' and status != 'FAILED'"
    if parent_run_id:
        query += f" and tags.`{tracking.PARENT_TAG}` = '{parent_run_id}'"
    runs = [r for r in client.search_runs([experiment_id], filter_string=query, max_results=10_000)
            if "val_acc" in r.data.metrics]

    def rank(run: Any) -> tuple[int, float]:
        tag = run.data.tags.get(tracking.OBJECTIVE_TAG, "")
        metrics, objective = run.data.metrics, objective_spec(tag) if tag in objective_names() else None
        if objective is not None and objective.stage_comparable and "objective" in metrics:
            return 0, -metrics["objective"]
        return int(run.info.status != "FINISHED"), -metrics.get("objective", metrics["val_acc"])

    runs.sort(key=rank)
    rows = [{"search_run_id": r.info.run_id, "trial_id": r.data.tags.get("trial_id", ""),
             "objective": r.data.metrics.get("objective", r.data.metrics["val_acc"]),
             "search_val_acc": r.data.metrics.get("val_acc"), "dataset": r.data.tags.get("dataset", "")}
            for r in runs[:k]]
    return pd.DataFrame(rows, columns=["search_run_id", "trial_id", "objective", "search_val_acc", "dataset"])


@dataclass(frozen=True)
class RetrainJob:
    """One retraining, as handed to a Ray task."""

    search_run_id: str
    trial_id: str
    config: RetrainConfig
    tracking_uri: str
    experiment_id: str
    parent_run_id: str | None
    cpus: float
    gpus: float
    precision: str = "fp32"


def task_resources(cpus: float, gpus: float) -> dict[str, float]:
    """What one retraining task asks Ray for; a fractional ``gpus`` lets several share one GPU."""
    return {"num_cpus": cpus, "num_gpus": gpus}


@ray.remote
def retrain_task(job: RetrainJob, data: ImageData) -> dict[str, Any]:
    """Retrain one genotype on ``data`` (Ray resolves it from the object store); log it as an MLflow run linked to
    its search run."""
    client = tracking.client_for(job.tracking_uri)
    genotype = genotype_from_dict(tracking.selected_genotype(client, job.search_run_id))
    config = job.config.validate(genotype.patch_size)
    run_id = tracking.start_run(
        client, job.experiment_id, f"retrain-{job.trial_id or job.search_run_id[:8]}", "retrain",
        tags={"search_run_id": job.search_run_id, "trial_id": job.trial_id, "dataset": config.data.dataset},
        parent_run_id=job.parent_run_id,
    )
    try:
        tracking.log_params(client, run_id, tracking.flatten("", {"retrain": vars(config) | {"data": vars(config.data)}}))
        client.log_text(run_id, genotype.to_json(), "genotype.json")
        with tempfile.TemporaryDirectory() as folder:
            result = retrain(genotype, config, data, out_dir=folder, device="cuda" if job.gpus > 0 else "cpu",
                             precision=job.precision,
                             on_epoch_end=lambda row: tracking.log_metrics(client, run_id, row, step=row["epoch"]))
            model_store.log_model(client, run_id, folder, model_store.example_pixels(data, config.data.resolved_image_size))
        final = {"test_acc": result.test_acc, "params": result.params, "macs": result.macs,
                 "retrain_seconds": result.seconds}
        if result.val_acc is not None:
            final["selection_acc"] = result.val_acc
        tracking.log_metrics(client, run_id, final, step=config.epochs)
    except BaseException as err:
        tracking.end_run(client, run_id, "FAILED", error=repr(err))
        raise
    tracking.end_run(client, run_id, "FINISHED")
    return {"search_run_id": job.search_run_id, "trial_id": job.trial_id, "retrain_run_id": run_id,
            "selection_acc": result.val_acc, "test_acc": result.test_acc, "retrain_params": result.params,
            "retrain_macs": result.macs}


def retrain_top(
    candidates: pd.DataFrame, *, tracking_uri: str, experiment_id: str, data: DataConfig, data_ref: ray.ObjectRef,
    epochs: int, seed: int,
    cpus: float, gpus: float, parent_run_id: str | None = None, stop: Callable[[], bool] = lambda: False,
    precision: str = "fp32",
) -> pd.DataFrame:
    """Retrain every candidate in parallel, except those the sweep already retrained (a resumed sweep); return the
    candidates with the retraining results joined on. ``data_ref`` holds the data set ``data`` names, already loaded
    and put in the object store once: every task reads that copy. ``stop()`` true cancels the retrainings still
    running."""
    config = RetrainConfig(data=data, epochs=epochs, seed=seed, threads=max(1, int(cpus)))
    already = tracking.finished_retrains(tracking.client_for(tracking_uri), experiment_id, parent_run_id)
    jobs = [RetrainJob(row.search_run_id, row.trial_id, config, tracking_uri, experiment_id, parent_run_id, cpus, gpus,
                       precision) for row in candidates.itertuples() if row.search_run_id not in already]
    pending = [retrain_task.options(**task_resources(cpus, gpus)).remote(job, data_ref) for job in jobs]
    print(f"retraining {len(jobs)} genotype(s) from scratch in parallel, {epochs} epochs each"
          + (f" ({len(candidates) - len(jobs)} already retrained)" if len(jobs) < len(candidates) else "") + " ...",
          flush=True)
    done: list[dict[str, Any]] = [already[r] for r in candidates["search_run_id"] if r in already]
    while pending:  # one line per job as it finishes, so a long retraining phase is never silent
        finished, pending = ray.wait(pending, num_returns=1, timeout=1.0)
        if stop():
            for ref in pending:
                ray.cancel(ref, force=True)
            break
        if not finished:
            continue
        done.append(ray.get(finished[0]))
        selection = done[-1]["selection_acc"]
        print(f"  retrained {len(done)}/{len(candidates)}: trial {done[-1]['trial_id'] or done[-1]['search_run_id'][:8]} "
              + (f"selection_acc {selection:.3f} " if selection is not None else "")
              + f"test_acc {done[-1]['test_acc']:.3f} (MLflow run {done[-1]['retrain_run_id']})", flush=True)
    results = pd.DataFrame(done, columns=["search_run_id", "retrain_run_id", "selection_acc", "test_acc",
                                          "retrain_params", "retrain_macs"])
    return candidates.merge(results, on="search_run_id", how="left")


def main(argv: list[str] | None = None) -> int:
    """``experiments/retrain.py --experiment NAME --top K``: retrain the K best genotypes an experiment logged."""
    freeze_heap_at_exit()
    parser = argparse.ArgumentParser(prog="retrain.py", description=main.__doc__)
    parser.add_argument("--experiment", required=True, help="MLflow experiment of the search runs")
    parser.add_argument("--top", type=int, default=2, help="how many genotypes to retrain (default 2)")
    parser.add_argument("--epochs", type=int, default=RetrainConfig.epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", type=float, default=1, help="CPUs per retraining task")
    parser.add_argument("--gpus", type=float, default=0, help="GPUs per retraining task")
    parser.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db")
    parser.add_argument("--address", help="Ray cluster address (default: join a running cluster, else start one)")
    args = parser.parse_args(argv)
    tracking_uri = tracking.resolve_uri(args.tracking_uri)
    try:
        if args.top < 1 or args.epochs < 1:
            raise ConfigError(f"--top ({args.top}) and --epochs ({args.epochs}) must be >= 1")
        tracking.check_reachable(tracking_uri)
        client = tracking.client_for(tracking_uri)
        experiment = client.get_experiment_by_name(args.experiment)
        if experiment is None:
            raise ConfigError(f"no MLflow experiment {args.experiment!r} in {tracking_uri}")
        candidates = top_search_runs(tracking_uri, experiment.experiment_id, args.top)
        if candidates.empty:
            raise ConfigError(f"experiment {args.experiment!r} has no search run with a genotype and val_acc")
        datasets = set(candidates["dataset"])
        if len(datasets) != 1:
            raise ConfigError(f"the top runs were searched on different data sets {sorted(datasets)}")
        search_params = client.get_run(candidates["search_run_id"].iloc[0]).data.params
        data = DataConfig(dataset=datasets.pop(), data_root=None if search_params.get("data.data_root") in (None, "None")
                          else search_params["data.data_root"])
        loaded = load_data(data)
    except (ConfigError, DataError) as err:
        print(f"retrain.py: error: {err}", file=sys.stderr)
        return 2
    print(f"Ray dashboard: {connect_ray(args.address)}")
    table = retrain_top(candidates, tracking_uri=tracking_uri, experiment_id=experiment.experiment_id, data=data,
                        data_ref=ray.put(loaded), epochs=args.epochs, seed=args.seed, cpus=args.cpus, gpus=args.gpus)
    print(table.drop(columns=["search_run_id", "retrain_run_id"]).to_string(index=False))
    return 0
