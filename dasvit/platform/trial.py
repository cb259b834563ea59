"""One search trial = one Ray Train ``TorchTrainer`` run of the DASViT search on N data-parallel workers.

Ray Train V2 trainers cannot be handed to ``tune.Tuner``; the Tune trainable is a function (``search_trial``) that
builds and runs the trainer, with ``TuneReportCallback`` forwarding each epoch's report to Tune (and ASHA).
Rank 0 checkpoints after every epoch (weights, alpha, optimisers, stage, op masks, the MLflow run id) and logs to
MLflow, also after every epoch, because ASHA kills a stopped trial without warning. After a worker failure Ray
Train restarts the group from the last checkpoint (``FailureConfig``) and the trial goes on in the same MLflow run.

Settings cross into Ray as frozen dataclasses built and validated in the driver (``TrialSetup`` for the Tune
trainable, ``WorkerConfig`` for each Train worker), so a misspelt setting fails there, not in a remote worker.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch
from ray import tune
from ray.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from dasvit.config import SearchConfig
from dasvit.data import ImageData
from dasvit.io import atomic_torch_save
from dasvit.metrics import count_macs, count_params
from dasvit.model import build_model
from dasvit.platform import tracking
from dasvit.platform.config import trial_search_config
from dasvit.platform.overhead import Overhead
from dasvit.search import EpochRecord, SearchRun

STATE_FILE = "search_state.pt"
RUN_FILE = "mlflow_run.json"
FAULT_ENV = "DASVIT_TEST_FAULT"  # tests only: "raise@<epoch>" or "kill@<epoch>" (global epoch, after its checkpoint)
FAULT_ONCE_ENV = "DASVIT_TEST_FAULT_ONCE"  # tests only: a path; the fault fires only while it does not exist


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of one sweep shares; it is saved with the sweep so that ``--resume`` rebuilds it."""

    search: SearchConfig  # the base config; each trial overrides the values Optuna proposes
    workers_per_trial: int
    cpus_per_worker: float
    gpus_per_worker: float
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    storage_path: str
    max_failures: int
    precision: str = "fp32"
    fused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "search": self.search.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSetup:
        return cls(**{**data, "search": SearchConfig.from_dict(data["search"]).validate()})


@dataclass(frozen=True)
class WorkerConfig:
    """What each Ray Train worker of one trial needs."""

    search: SearchConfig
    workers: int
    cpus_per_worker: float
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    trial_id: str
    trial_name: str
    precision: str = "fp32"
    fused: bool = False
    trial_started_at: float = 0.0  # when the Tune trainable began: the worker group's start-up is measured from it


def _maybe_inject_fault(epoch: int) -> None:
    """Fault injection for the reliability tests; inert unless ``DASVIT_TEST_FAULT`` is set."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    kind, _, at = spec.partition("@")
    if epoch != int(at):
        return
    once = os.environ.get(FAULT_ONCE_ENV)
    if once:
        try:
            Path(once).touch(exist_ok=False)
        except FileExistsError:
            return
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise RuntimeError(f"injected failure at epoch {epoch} ({FAULT_ENV}={spec})")


def genotype_size(run: SearchRun) -> tuple[int, int]:
    """Params and MACs of the network the current alpha would discretise to."""
    spec = run.input_spec
    model = build_model(run.genotype(), spec.image_size, spec.in_chans, spec.num_classes)
    return count_params(model), count_macs(model, spec.image_size, spec.in_chans)


def restore_checkpoint(run: SearchRun) -> str | None:
    """Load the trial's last Ray Train checkpoint into ``run``, if there is one; return its MLflow run id."""
    restored = ray.train.get_checkpoint()
    if restored is None:
        return None
    with restored.as_directory() as folder:
        run.load_state_dict(torch.load(Path(folder) / STATE_FILE, map_location=run.device, weights_only=True))
        return json.loads((Path(folder) / RUN_FILE).read_text())["run_id"]


def write_checkpoint(folder: str, run: SearchRun, run_id: str) -> Checkpoint:
    atomic_torch_save(Path(folder) / STATE_FILE, run.state_dict())
    (Path(folder) / RUN_FILE).write_text(json.dumps({"run_id": run_id}))
    return Checkpoint.from_directory(folder)


def search_worker(config: WorkerConfig, data_ref: ray.ObjectRef) -> None:
    """The Ray Train loop run on every worker: resume or start, search, checkpoint and log after every epoch.
    The data set comes from the object store (``data_ref``), loaded once by the sweep, not by every worker."""
    overhead = Overhead()
    overhead.add("worker_group_start", time.time() - config.trial_started_at)  # with the worker's imports
    torch.set_num_threads(max(1, int(config.cpus_per_worker)))
    rank = ray.train.get_context().get_world_rank()
    with overhead.timed("data_loading"):
        data = ray.get(data_ref)
    with overhead.timed("model_build"):
        run = SearchRun(config.search, data, device=ray.train.torch.get_device(), fused=config.fused,
                        precision=config.precision)
    with overhead.timed("mlflow_logging"):
        client = tracking.client_for(config.tracking_uri)
    with overhead.timed("checkpointing"):
        run_id = restore_checkpoint(run)
    if rank == 0 and run_id is None:
        with overhead.timed("mlflow_logging"):
            run_id = tracking.trial_run(client, config.experiment_id, config.parent_run_id, config.trial_id,
                                        config.trial_name, config.search, config.workers)

    def epoch_metrics(search: SearchRun, record: EpochRecord) -> dict[str, Any]:
        params, macs = genotype_size(search)
        return {**vars(record), "epochs_done": record.global_epoch + 1, "genotype_params": params,
                "genotype_macs": macs, "mlflow_run_id": run_id or ""}

    def on_epoch_end(search: SearchRun, record: EpochRecord) -> None:
        with overhead.timed("genotype_size"):
            metrics = epoch_metrics(search, record)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if rank == 0:
                with overhead.timed("mlflow_logging"):
                    tracking.log_epoch(client, run_id, search, metrics, record)
                with overhead.timed("checkpointing"):
                    checkpoint = write_checkpoint(folder, search, run_id)
                if search.finished:  # before the last report: on it ASHA stops the trial (max_t) without warning
                    tracking.log_metrics(client, run_id, overhead.metrics(), step=0)
                    tracking.end_run(client, run_id, "FINISHED")
            with overhead.timed("report"):
                ray.train.report(metrics, checkpoint=checkpoint)
        if rank == 0:
            _maybe_inject_fault(record.global_epoch)

    try:
        if run.finished:  # restored after its last epoch (the sweep died before Tune saw it): report that again
            if rank == 0:
                tracking.end_run(client, run_id, "FINISHED")
            ray.train.report(epoch_metrics(run, run.history[-1]))
        run.run(on_epoch_end=on_epoch_end)
    except BaseException as err:
        if rank == 0 and run_id is not None:
            client.set_tag(run_id, "error", repr(err)[:5000])
        raise


def scaling_config(setup: TrialSetup) -> ScalingConfig:
    """Each trial's worker group: ``workers_per_trial`` workers with their CPUs and GPUs (nccl when on GPUs)."""
    gpus = setup.gpus_per_worker
    return ScalingConfig(num_workers=setup.workers_per_trial, use_gpu=gpus > 0,
                         resources_per_worker={"CPU": setup.cpus_per_worker, **({"GPU": gpus} if gpus > 0 else {})})


def search_trial(tuned: dict[str, Any], *, setup: TrialSetup, data: ImageData) -> None:
    """The Tune trainable: runs one ``TorchTrainer`` for the values Optuna proposed (``tuned``) on ``data``."""
    started_at = time.time()
    context = tune.get_context()
    trial_id = context.get_trial_id()
    worker = WorkerConfig(
        search=trial_search_config(setup.search, tuned), workers=setup.workers_per_trial,
        cpus_per_worker=setup.cpus_per_worker, tracking_uri=setup.tracking_uri, experiment_id=setup.experiment_id,
        parent_run_id=setup.parent_run_id, trial_id=trial_id, trial_name=context.get_trial_name(),
        precision=setup.precision, fused=setup.fused, trial_started_at=started_at,
    )
    trainer = TorchTrainer(
        partial(search_worker, worker, ray.put(data)),  # one copy in the object store for all workers
        scaling_config=scaling_config(setup),
        run_config=RunConfig(
            name=f"train-{trial_id}", storage_path=setup.storage_path, callbacks=[TuneReportCallback()],
            failure_config=FailureConfig(max_failures=setup.max_failures),
        ),
    )
    try:
        trainer.fit()
    except Exception as err:  # the worker group failed for good (retries exhausted): the run must not stay RUNNING
        client = tracking.client_for(setup.tracking_uri)
        run_id = tracking.find_trial_run(client, setup.experiment_id, setup.parent_run_id, trial_id)
        if run_id is not None:
            tracking.end_run(client, run_id, "FAILED", error=repr(err))
        raise
    log_teardown(setup, trial_id)


def log_teardown(setup: TrialSetup, trial_id: str) -> None:
    """The worker group's teardown: from the search run's end to ``fit()`` returning in the trainable."""
    client = tracking.client_for(setup.tracking_uri)
    run_id = tracking.find_trial_run(client, setup.experiment_id, setup.parent_run_id, trial_id)
    if run_id is None:
        return
    ended_at = (client.get_run(run_id).info.end_time or 0) / 1000
    tracking.log_metrics(client, run_id, {"overhead_teardown_s": max(0.0, time.time() - ended_at)}, step=0)
