"""One search trial = one Ray Train ``TorchTrainer`` run of the DASViT search on N data-parallel workers.

Ray Train V2 trainers cannot be handed to ``tune.Tuner``; the Tune trainable is a function (``search_trial``) that
builds and runs the trainer, with ``TuneReportCallback`` forwarding each epoch's report to Tune (and ASHA). The
workers' loop lives in ``dasvit.platform.trial_worker``, which only the workers import: this module, loaded by every
trial's driver process, stays free of torchvision and the search core (measured: 3.5 s -> ~2 s of imports).

Settings cross into Ray as frozen dataclasses built and validated in the driver (``TrialSetup`` for the Tune
trainable, ``dasvit.platform.worker_config.WorkerConfig`` for each Train worker), so a misspelt setting fails
there, not in a remote worker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import ray
from ray import tune
from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from dasvit.platform import tracking
from dasvit.platform.config import trial_search_config
from dasvit.platform.worker_config import TrialSetup, WorkerConfig

if TYPE_CHECKING:
    from dasvit.data import ImageData


@dataclass(frozen=True)
class DataHandle:
    """The sweep's data set in Ray's object store. Tune hands the trial's driver this handle, which it passes on to
    the workers unopened: opening it there would import torchvision and the search core for nothing."""

    ref: ray.ObjectRef

    @classmethod
    def put(cls, data: ImageData) -> DataHandle:
        return cls(ray.put(data))


def run_search_worker(config: WorkerConfig, data_ref: ray.ObjectRef) -> None:
    """The Train loop, imported where it runs (the workers), not in the trial's driver."""
    from dasvit.platform.trial_worker import search_worker

    search_worker(config, data_ref)


def scaling_config(setup: TrialSetup) -> ScalingConfig:
    """Each trial's worker group: ``workers_per_trial`` workers with their CPUs and GPUs (nccl when on GPUs)."""
    gpus = setup.gpus_per_worker
    return ScalingConfig(num_workers=setup.workers_per_trial, use_gpu=gpus > 0,
                         resources_per_worker={"CPU": setup.cpus_per_worker, **({"GPU": gpus} if gpus > 0 else {})})


def search_trial(tuned: dict[str, Any], *, setup: TrialSetup, data: DataHandle) -> None:
    """The Tune trainable: runs one ``TorchTrainer`` for the values Optuna proposed (``tuned``) on ``data``."""
    started_at = time.time()
    context = tune.get_context()
    trial_id = context.get_trial_id()
    worker = WorkerConfig(setup, trial_search_config(setup.search, tuned), trial_id, context.get_trial_name(),
                          trial_started_at=started_at)
    trainer = TorchTrainer(
        partial(run_search_worker, worker, data.ref),  # one copy in the object store for all trials and workers
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
        # Not a run the sweep has already ended: on Ctrl-C or SIGTERM the driver ends it KILLED (interrupted) while
        # Tune tears the trial down, and fit() then raises here too; that is not the trial's failure.
        if run_id is not None and client.get_run(run_id).info.status == "RUNNING":
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
