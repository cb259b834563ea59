"""MLflow tracking: one parent run per sweep, one child run per search trial, one run per retraining.

Every call names its run id explicitly (``MlflowClient``), so Ray workers never depend on MLflow's global
active-run state. The default store is a SQLite file; its URI and the artifact root are made absolute because
Ray workers run in other working directories.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import requests
from filelock import FileLock
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.credentials import read_mlflow_creds

from dasvit.config import ConfigError
from dasvit.genotype import Genotype

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per genotype download is noise

PARENT_TAG = "mlflow.parentRunId"
KIND_TAG = "dasvit.kind"  # sweep | search | retrain
OBJECTIVE_TAG = "dasvit.objective"  # what a search run's ``objective`` metric is: params | proxy | supernet


def default_tracking_uri(workdir: str | Path = ".") -> str:
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def resolve_uri(explicit: str | None, workdir: str | Path = ".") -> str:
    """The store to use: the one asked for, else ``$MLFLOW_TRACKING_URI``, else ``<workdir>/mlflow.db``."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(workdir)


def sqlite_path(tracking_uri: str) -> Path | None:
    return Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///") else None


def store_lock(tracking_uri: str) -> AbstractContextManager:
    """Held while a SQLite store may be created: two sweeps creating one ``mlflow.db`` at once raced on its
    first migration, and the loser reported the store as unreachable."""
    path = sqlite_path(tracking_uri)
    return FileLock(path.parent / f".{path.name}.lock") if path is not None and path.parent.is_dir() else nullcontext()


def client_for(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri)


def check_reachable(tracking_uri: str) -> None:
    """Fail fast, before any trial starts, when the tracking store cannot be used.

    A server must answer ``/health`` within 5 s (MLflow's own client would retry for minutes); a SQLite file must
    sit in an existing folder (MLflow would silently create the folders of a mistyped path) and, if it exists, be
    an SQLite database (MLflow would call a damaged one unreachable).
    """
    path = sqlite_path(tracking_uri)
    if path is not None and path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as file:
            if file.read(16) != b"SQLite format 3\x00":
                raise ConfigError(f"MLflow store {path} is not an SQLite database (damaged, or another file): "
                                  "restore it from a backup, or move it away to start a new store")
    try:
        if tracking_uri.startswith(("http://", "https://")):
            requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=5).raise_for_status()
            check_credentials(tracking_uri)
            return
        if path is not None and not path.parent.is_dir():
            raise FileNotFoundError(f"folder {str(path.parent)!r} does not exist")
        client_for(tracking_uri).search_experiments(max_results=1)
    except CredentialsError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure here means the store is unusable
        raise ConfigError(f"MLflow tracking store {tracking_uri!r} is unreachable: {err}") from None


def check_credentials(tracking_uri: str) -> None:
    """A server that runs MLflow's basic-auth app answers 401 without valid credentials. They come from where
    MLflow's own client reads them, ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` or the file
    ``~/.mlflow/credentials``, never from a flag (a command line is visible to every user of the host), and no
    message repeats the password."""
    creds = read_mlflow_creds()
    user = creds.username
    auth = (creds.username, creds.password) if creds.username and creds.password else None
    answer = requests.get(f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/experiments/search", params={"max_results": 1},
                          auth=auth, timeout=5)
    if answer.status_code == 401 and auth is None:
        raise CredentialsError(f"MLflow tracking server {tracking_uri!r} requires credentials: set "
                               "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD in the environment (or "
                               "~/.mlflow/credentials)")
    if answer.status_code == 401:
        raise CredentialsError(f"MLflow tracking server {tracking_uri!r} rejected the credentials of user {user!r} "
                               "(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)")
    if answer.status_code == 403:
        raise CredentialsError(f"MLflow tracking server {tracking_uri!r}: user {user!r} may not read experiments")
    answer.raise_for_status()


class CredentialsError(ConfigError):
    """Missing or wrong credentials for a tracking server: reported as they are, not as 'unreachable'."""


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str | Path | None = None) -> str:
    """The experiment's id, created if missing; ``ConfigError`` when the store refuses (e.g. no write permission)."""
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = Path(artifact_root).resolve().as_uri() if artifact_root is not None else None
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as err:
        raise ConfigError(f"MLflow experiment {name!r} cannot be created or read: {err.message}") from None


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """Nested config -> MLflow params ``a.b.c = value``."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, sub in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), sub))
        return out
    return {prefix: json.dumps(value) if isinstance(value, (list, tuple)) else str(value)}


def log_params(client: MlflowClient, run_id: str, params: dict[str, str]) -> None:
    items = [Param(k, v[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


def log_metrics(client: MlflowClient, run_id: str, metrics: dict[str, float], step: int) -> None:
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def start_run(
    client: MlflowClient, experiment_id: str, name: str, kind: str, tags: dict[str, str] | None = None,
    parent_run_id: str | None = None,
) -> str:
    all_tags = {KIND_TAG: kind, **(tags or {})}
    if parent_run_id:
        all_tags[PARENT_TAG] = parent_run_id
    return client.create_run(experiment_id, run_name=name, tags=all_tags).info.run_id


def end_run(client: MlflowClient, run_id: str, status: str, error: str | None = None,
            end_time_ms: int | None = None) -> None:
    if error is not None:
        client.set_tag(run_id, "error", error[:5000])
    client.set_tag(run_id, "status", status.lower())
    client.set_terminated(run_id, status, end_time=end_time_ms)


def last_report_ms(client: MlflowClient, run_id: str, metric: str = "val_acc") -> int | None:
    """When the run last logged ``metric``: the moment a killed trial really stopped working."""
    history = client.get_metric_history(run_id, metric)
    return max((m.timestamp for m in history), default=None)


def log_search_artifacts(client: MlflowClient, run_id: str, genotype: Genotype, alpha_history: dict[str, Any],
                         plots: bool = True) -> None:
    """Genotype JSON, alpha history and (with ``plots``) their plots, overwritten each time so that a stopped trial
    keeps its latest."""
    client.log_text(run_id, genotype.to_json(), "genotype.json")
    client.log_dict(run_id, alpha_history, "alpha_history.json")
    if plots:
        # matplotlib only where plots are drawn: every trial's driver imports this module and never draws (0.36 s)
        import matplotlib.pyplot as plt

        from dasvit.plots import plot_alpha_history, plot_genotype

        for name, figure in (("alpha_history.png", plot_alpha_history(alpha_history)),
                             ("genotype.png", plot_genotype(genotype))):
            client.log_figure(run_id, figure, f"plots/{name}")
            plt.close(figure)


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, kind: str | None = None) -> list:
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    if kind is not None:
        query += f" and tags.`{KIND_TAG}` = '{kind}'"
    return client.search_runs([experiment_id], filter_string=query, max_results=10_000)


def trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str, trial_name: str,
              search: Any, workers: int, objective: str) -> str:
    """The trial's search run: the one it already has under this sweep (a resumed sweep keeps its runs), else a new
    one with the search config as params."""
    run_id = find_trial_run(client, experiment_id, parent_run_id, trial_id)
    if run_id is not None:
        return run_id
    run_id = start_run(client, experiment_id, trial_name, "search",
                       tags={"trial_id": trial_id, "dataset": search.data.dataset, OBJECTIVE_TAG: objective},
                       parent_run_id=parent_run_id)
    log_params(client, run_id, flatten("", search.to_dict()))
    log_params(client, run_id, {"workers": str(workers)})
    return run_id


def log_epoch(client: MlflowClient, run_id: str, search: Any, metrics: dict[str, Any], record: Any) -> None:
    """One search epoch: its metrics (step = global epoch), the stage tag and the latest genotype and alpha. The
    plots are drawn at the end of each stage only (0.24 s each time; the JSON they draw is logged every epoch), which
    is also where ASHA's rungs fall in the default schedule."""
    skip = ("global_epoch", "epochs_done", "mlflow_run_id")
    log_metrics(client, run_id, {k: v for k, v in metrics.items() if k not in skip and v == v},  # NaN: no score yet
                step=record.global_epoch)
    client.set_tag(run_id, "stage", str(record.stage))
    alpha = {"ops": list(search.config.ops), "epochs": search.alpha_history, "stages": search.stage_summaries}
    log_search_artifacts(client, run_id, search.genotype(), alpha, plots=search.closes_stage(record))


def find_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> str | None:
    """The search run a trial already has under this sweep, if any."""
    for run in child_runs(client, experiment_id, parent_run_id, kind="search"):
        if run.data.tags.get("trial_id") == trial_id:
            return run.info.run_id
    return None


def logged_epochs(client: MlflowClient, run_id: str) -> int:
    """Epochs a search run logged (distinct steps: a restarted worker group may log an epoch twice)."""
    return len({m.step for m in client.get_metric_history(run_id, "val_acc")})


def close_dangling_runs(client: MlflowClient, experiment_id: str, parent_run_id: str,
                        outcome_by_trial: dict[str, str], killed_status: str = "early_stopped",
                        total_epochs: int | None = None) -> None:
    """End every child run still RUNNING: ASHA-stopped (or, with ``killed_status="interrupted"``, interrupted)
    trials as KILLED, at the time of their last report, errored ones as FAILED.

    A trial stopped early has its Ray processes killed, so its run cannot end itself. ASHA's stop reaches the
    trial asynchronously, so a trial may still log epochs after the report ASHA stopped it on: one that logged all
    ``total_epochs`` is a complete search and ends FINISHED.
    """
    for run in child_runs(client, experiment_id, parent_run_id):
        if run.info.status != RunStatus.to_string(RunStatus.RUNNING):
            continue
        run_id = run.info.run_id
        outcome = outcome_by_trial.get(run.data.tags.get("trial_id", ""), "KILLED")
        if outcome == "KILLED" and total_epochs is not None and logged_epochs(client, run_id) >= total_epochs:
            outcome = "FINISHED"
        end_run(client, run_id, outcome, error="the trial errored" if outcome == "FAILED" else None,
                end_time_ms=last_report_ms(client, run_id) if outcome != "FAILED" else None)
        if outcome == "KILLED":
            client.set_tag(run_id, "status", killed_status)


def finished_retrains(client: MlflowClient, experiment_id: str, parent_run_id: str | None) -> dict[str, dict[str, Any]]:
    """The FINISHED retraining runs under a sweep, by the search run they retrained: a resumed sweep reuses them."""
    if parent_run_id is None:
        return {}
    done = {}
    for run in child_runs(client, experiment_id, parent_run_id, kind="retrain"):
        if run.info.status == "FINISHED" and "test_acc" in run.data.metrics:
            metrics = run.data.metrics
            done[run.data.tags["search_run_id"]] = {
                "search_run_id": run.data.tags["search_run_id"], "trial_id": run.data.tags.get("trial_id", ""),
                "retrain_run_id": run.info.run_id, "selection_acc": metrics.get("selection_acc"),
                "test_acc": metrics["test_acc"],
                "retrain_params": metrics.get("params"), "retrain_macs": metrics.get("macs")}
    return done


def load_genotype_artifact(client: MlflowClient, run_id: str, name: str = "genotype.json") -> dict[str, Any]:
    try:
        path = client.download_artifacts(run_id, name)
    except MlflowException as err:
        raise ConfigError(f"run {run_id} has no {name} artifact: {err}") from None
    return json.loads(Path(path).read_text())


SCORED_GENOTYPE = "scored_genotype.json"


def selected_genotype(client: MlflowClient, run_id: str) -> dict[str, Any]:
    """The genotype a search run hands back: the one its objective scored last (``scored_genotype.json``, written
    at stage ends), else its latest ``genotype.json``. A trial stopped by ASHA may log epochs past the rung it was
    stopped at; its objective, and so the choice to retrain it, is about the scored genotype."""
    names = {artifact.path for artifact in client.list_artifacts(run_id)}
    return load_genotype_artifact(client, run_id, SCORED_GENOTYPE if SCORED_GENOTYPE in names else "genotype.json")
