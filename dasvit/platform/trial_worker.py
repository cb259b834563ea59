"""The Ray Train loop of one search trial, run on every worker: resume or start, search, checkpoint and log after
every epoch. Only the workers import this module (it brings torch, torchvision and the search core); the trial's
driver (``dasvit.platform.trial``) does not, which keeps each trial's start light.

Rank 0 checkpoints after every epoch (weights, alpha, optimisers, stage, op masks, the MLflow run id) and logs to
MLflow, also after every epoch, because ASHA kills a stopped trial without warning. After a worker failure Ray
Train restarts the group from the last checkpoint (``FailureConfig``) and the trial goes on in the same MLflow run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch
from ray.train import Checkpoint

from dasvit.distributed import identical_across_ranks
from dasvit.epoch_record import EpochRecord
from dasvit.io import atomic_torch_save
from dasvit.metrics import count_macs, count_params
from dasvit.model import build_model
from dasvit.platform import tracking
from dasvit.platform.overhead import Overhead
from dasvit.platform.trial_score import TrialScore
from dasvit.platform.worker_config import WorkerConfig
from dasvit.search import SearchRun
from dasvit.vocabulary import resolve

STATE_FILE = "search_state.pt"
RUN_FILE = "mlflow_run.json"
# "module:function", called on rank 0 with the global epoch after each epoch's report (its checkpoint registered):
# how the reliability tests inject faults into a real trial (tests/fault_hooks.py), and a place for a user's own.
EPOCH_HOOK_ENV = "DASVIT_EPOCH_HOOK"


def epoch_hook() -> Callable[[int], None] | None:
    """The function ``$DASVIT_EPOCH_HOOK`` names, imported; None when unset."""
    reference = os.environ.get(EPOCH_HOOK_ENV)
    return resolve(reference) if reference else None


def genotype_size(run: SearchRun) -> tuple[int, int]:
    """Params and MACs of the network the current alpha would discretise to."""
    spec = run.input_spec
    model = build_model(run.genotype(), spec.image_size, spec.in_chans, spec.num_classes)
    return count_params(model), count_macs(model, spec.image_size, spec.in_chans)


def restore_checkpoint(run: SearchRun) -> tuple[str | None, TrialScore]:
    """Load the trial's last Ray Train checkpoint into ``run``, if there is one; return its MLflow run id and the
    trial's score as of that checkpoint."""
    restored = ray.train.get_checkpoint()
    if restored is None:
        return None, TrialScore()
    with restored.as_directory() as folder:
        run.load_state_dict(torch.load(Path(folder) / STATE_FILE, map_location=run.device, weights_only=True))
        saved = json.loads((Path(folder) / RUN_FILE).read_text())
        return saved["run_id"], TrialScore.from_dict(saved["score"])


def write_checkpoint(folder: str, run: SearchRun, run_id: str, score: TrialScore) -> Checkpoint:
    atomic_torch_save(Path(folder) / STATE_FILE, run.state_dict())
    (Path(folder) / RUN_FILE).write_text(json.dumps({"run_id": run_id, "score": score.to_dict()}))
    return Checkpoint.from_directory(folder)


class TrialWorker:
    """One worker of a trial: its search, its MLflow run (rank 0 logs) and its score; ``overhead`` times the parts
    that are not the search itself (``dasvit.platform.overhead``)."""

    def __init__(self, config: WorkerConfig, data_ref: ray.ObjectRef):
        self.overhead = Overhead()
        self.overhead.add("worker_group_start", time.time() - config.trial_started_at)  # with the worker's imports
        self.config, self.setup = config, config.setup
        torch.set_num_threads(max(1, int(self.setup.cpus_per_worker)))
        self.rank = ray.train.get_context().get_world_rank()
        self.hook = epoch_hook() if self.rank == 0 else None
        with self.overhead.timed("data_loading"):
            self.data = ray.get(data_ref)
        with self.overhead.timed("model_build"):
            self.run = SearchRun(config.search, self.data, device=ray.train.torch.get_device(), fused=self.setup.fused,
                                 precision=self.setup.precision)
        with self.overhead.timed("mlflow_logging"):
            self.client = tracking.client_for(self.setup.tracking_uri)
        with self.overhead.timed("checkpointing"):
            self.run_id, self.score = restore_checkpoint(self.run)
        if self.rank == 0 and self.run_id is None:
            with self.overhead.timed("mlflow_logging"):
                self.run_id = tracking.trial_run(self.client, self.setup.experiment_id, self.setup.parent_run_id,
                                                 config.trial_id, config.trial_name, config.search,
                                                 self.setup.workers_per_trial, self.setup.objective)

    def epoch_metrics(self, record: EpochRecord, params: int, macs: int) -> dict[str, Any]:
        """Called on every rank: whether the workers' alpha is still bit-identical is an all-gather, checked, not
        assumed."""
        alpha_in_sync = identical_across_ranks(self.run.model.arch_parameters())
        # the objective and the supernet's figure first: Tune's console table shows the first few metrics reported
        return {"objective": self.score.objective, "val_acc": record.val_acc, "stage": record.stage,
                "epochs_done": record.global_epoch + 1, **vars(record), "proxy_val_acc": self.score.proxy_val_acc,
                "genotype_params": params, "genotype_macs": macs, "alpha_in_sync": float(alpha_in_sync),
                "mlflow_run_id": self.run_id or ""}

    def on_epoch_end(self, search: SearchRun, record: EpochRecord) -> None:
        setup, timed = self.setup, self.overhead.timed
        with timed("genotype_size"):
            params, macs = genotype_size(search)
        with timed("objective"):  # every rank scores (the same result on each): none waits idle for rank 0
            scored = self.score.update(search, record, params, macs, setup.objective, setup.proxy_epochs,
                                       setup.max_macs, self.data, setup.precision)
        metrics = self.epoch_metrics(record, params, macs)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = self.log_and_checkpoint(folder, search, metrics, record, scored) if self.rank == 0 else None
            with timed("report"):
                ray.train.report(metrics, checkpoint=checkpoint)
        if self.hook is not None:
            self.hook(record.global_epoch)

    def log_and_checkpoint(self, folder: str, search: SearchRun, metrics: dict[str, Any], record: EpochRecord,
                           scored: bool) -> Checkpoint:
        """Rank 0: the epoch's MLflow metrics (and the scored genotype), then the checkpoint Tune will register."""
        with self.overhead.timed("mlflow_logging"):
            tracking.log_epoch(self.client, self.run_id, search, metrics, record)
            if scored:
                self.client.log_text(self.run_id, search.genotype().to_json(), tracking.SCORED_GENOTYPE)
        with self.overhead.timed("checkpointing"):
            checkpoint = write_checkpoint(folder, search, self.run_id, self.score)
        if search.finished:  # before the last report: on it ASHA stops the trial (max_t) without warning
            tracking.log_metrics(self.client, self.run_id, self.overhead.metrics(), step=0)
            tracking.end_run(self.client, self.run_id, "FINISHED")
        return checkpoint

    def search(self) -> None:
        run = self.run
        try:
            if run.finished:  # restored after its last epoch (the sweep died before Tune saw it): report it again
                if self.rank == 0:
                    tracking.end_run(self.client, self.run_id, "FINISHED")
                ray.train.report(self.epoch_metrics(run.history[-1], *genotype_size(run)))
            run.run(on_epoch_end=self.on_epoch_end)
        except BaseException as err:
            if self.rank == 0 and self.run_id is not None:
                self.client.set_tag(self.run_id, "error", repr(err)[:5000])
            raise


def search_worker(config: WorkerConfig, data_ref: ray.ObjectRef) -> None:
    """The Ray Train loop run on every worker: resume or start, search, checkpoint and log after every epoch.
    The data set comes from the object store (``data_ref``), loaded once by the sweep, not by every worker."""
    TrialWorker(config, data_ref).search()
