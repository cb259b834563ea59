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
import signal
import tempfile
import time
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

STATE_FILE = "search_state.pt"
RUN_FILE = "mlflow_run.json"
# tests only: "raise@<epoch>" or "kill@<epoch>" (global epoch, after its checkpoint), several comma-separated
FAULT_ENV = "DASVIT_TEST_FAULT"
FAULT_ONCE_ENV = "DASVIT_TEST_FAULT_ONCE"  # tests only: a path; fault i fires only while <path>.<i> does not exist


def _maybe_inject_fault(epoch: int) -> None:
    """Fault injection for the reliability tests; inert unless ``DASVIT_TEST_FAULT`` is set. At ``epoch`` the first
    listed fault for it that is not spent fires, so that one sweep can fail its trials one after another."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    once = os.environ.get(FAULT_ONCE_ENV)
    for index, fault in enumerate(spec.split(",")):
        kind, _, at = fault.partition("@")
        if epoch != int(at):
            continue
        if once:
            try:
                Path(f"{once}.{index}").touch(exist_ok=False)
            except FileExistsError:
                continue
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"injected failure at epoch {epoch} ({FAULT_ENV}={fault})")


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


def search_worker(config: WorkerConfig, data_ref: ray.ObjectRef) -> None:
    """The Ray Train loop run on every worker: resume or start, search, checkpoint and log after every epoch.
    The data set comes from the object store (``data_ref``), loaded once by the sweep, not by every worker."""
    overhead = Overhead()
    overhead.add("worker_group_start", time.time() - config.trial_started_at)  # with the worker's imports
    setup = config.setup
    torch.set_num_threads(max(1, int(setup.cpus_per_worker)))
    rank = ray.train.get_context().get_world_rank()
    with overhead.timed("data_loading"):
        data = ray.get(data_ref)
    with overhead.timed("model_build"):
        run = SearchRun(config.search, data, device=ray.train.torch.get_device(), fused=setup.fused,
                        precision=setup.precision)
    with overhead.timed("mlflow_logging"):
        client = tracking.client_for(setup.tracking_uri)
    with overhead.timed("checkpointing"):
        run_id, score = restore_checkpoint(run)
    if rank == 0 and run_id is None:
        with overhead.timed("mlflow_logging"):
            run_id = tracking.trial_run(client, setup.experiment_id, setup.parent_run_id, config.trial_id,
                                        config.trial_name, config.search, setup.workers_per_trial, setup.objective)

    def epoch_metrics(record: EpochRecord, params: int, macs: int) -> dict[str, Any]:
        """Called on every rank: whether the workers' alpha is still bit-identical is an all-gather, checked, not
        assumed."""
        alpha_in_sync = identical_across_ranks(run.model.arch_parameters())
        # the objective and the supernet's figure first: Tune's console table shows the first few metrics reported
        return {"objective": score.objective, "val_acc": record.val_acc, "stage": record.stage,
                "epochs_done": record.global_epoch + 1, **vars(record), "proxy_val_acc": score.proxy_val_acc,
                "genotype_params": params, "genotype_macs": macs, "alpha_in_sync": float(alpha_in_sync),
                "mlflow_run_id": run_id or ""}

    def on_epoch_end(search: SearchRun, record: EpochRecord) -> None:
        with overhead.timed("genotype_size"):
            params, macs = genotype_size(search)
        with overhead.timed("objective"):  # every rank scores (the same result on each): none waits idle for rank 0
            scored = score.update(search, record, params, macs, setup.objective, setup.proxy_epochs, setup.max_macs, data,
                                  setup.precision)
        metrics = epoch_metrics(record, params, macs)
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if rank == 0:
                with overhead.timed("mlflow_logging"):
                    tracking.log_epoch(client, run_id, search, metrics, record)
                    if scored:
                        client.log_text(run_id, search.genotype().to_json(), tracking.SCORED_GENOTYPE)
                with overhead.timed("checkpointing"):
                    checkpoint = write_checkpoint(folder, search, run_id, score)
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
            ray.train.report(epoch_metrics(run.history[-1], *genotype_size(run)))
        run.run(on_epoch_end=on_epoch_end)
    except BaseException as err:
        if rank == 0 and run_id is not None:
            client.set_tag(run_id, "error", repr(err)[:5000])
        raise
