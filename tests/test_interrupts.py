"""Interrupts of a real sweep's driver (its own local Ray, started by ``experiments/sweep.py --address local``),
one after another on the same sweep, as a user's long sweep meets them: Ctrl-C, a SIGKILL that no handler sees,
SIGTERM; each ``--resume`` goes on from where the last one stopped, and the last one finishes the sweep exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from sweep_runs import TINY, experiment_runs, sweep_command

from dasvit.platform import tracking
from dasvit.platform.local_server import mlflow_server

pytestmark = pytest.mark.slow  # whole sweeps in Ray

NAME = "interrupted"
EPOCHS = 4  # per trial: room for a signal after a trial's first epoch
CONFIG = {**TINY, "objective": "params", "retrain": {"top_k": 2, "epochs": 1},
          "asha": {"grace_period": EPOCHS, "reduction_factor": 2},  # no early stopping: every trial runs all epochs
          "search": {**TINY["search"], "stages": [{"depth": 1, "epochs": 2}, {"depth": 2, "epochs": 2, "ops": 2}]}}


def signal_when(command: list[str], ready: Callable[[], bool], signum: int) -> subprocess.CompletedProcess:
    """Start the sweep ``command`` in a session of its own, send ``signum`` once ``ready()`` holds (SIGKILL to the
    whole session, as an OOM killer or a lost machine would end it), and return the ended driver."""
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    deadline, held = time.monotonic() + 300, False
    while not held and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.5)
        held = ready()
    assert held and sweep.poll() is None, sweep.communicate(timeout=60)[0][-3000:]
    if signum == signal.SIGKILL:
        os.killpg(sweep.pid, signal.SIGKILL)
    else:
        sweep.send_signal(signum)
    output, _ = sweep.communicate(timeout=180)
    return subprocess.CompletedProcess(command, sweep.returncode, output)


def assert_cleanly_interrupted(workdir: Path, uri: str, output: str) -> None:
    """No retraining started, nothing left RUNNING, the sweep's run KILLED with status=interrupted. A failure shows
    every run's kind and states and the end of the driver's ``output``."""
    runs = experiment_runs(workdir, NAME, tracking_uri=uri)
    states = [(r.data.tags.get(tracking.KIND_TAG), r.info.status, r.data.tags.get("status")) for r in runs]
    why = f"{states}\n{output[-3000:]}"
    assert "retrain" not in [kind for kind, _, _ in states], why
    assert "RUNNING" not in {status for _, status, _ in states}, why
    assert [state for state in states if state[0] == "sweep"] == [("sweep", "KILLED", "interrupted")], why


def test_ctrl_c_sigkill_and_sigterm_each_resume_and_the_sweep_ends_exactly_on_a_tracking_server(tmp_path):
    """Tracked on a real ``mlflow server`` over HTTP, as on a cluster.

    1. Ctrl-C during the first trial: no retraining starts, every RUNNING run ends KILLED with status=interrupted
       (never early_stopped), no half results table, our ``--resume`` named, exit 130.
    2. ``--resume``, then SIGKILL of its whole session once the first trial has finished: nothing runs a handler.
    3. ``--resume``, then SIGTERM (``timeout``, Slurm, Kubernetes) once the second trial has reported: it must reach
       our handler, not Ray's (which dumps a stack and leaves the runs RUNNING): exit 143, everything closed.
    4. ``--resume`` finishes the sweep in the same runs: one search run per trial, the finished trial not run again,
       every trial at its full epoch count, at most one retraining per trial.
    """
    with mlflow_server(tmp_path / "server") as server:
        uri = server.uri
        client = tracking.client_for(uri)
        command = sweep_command(tmp_path, NAME, CONFIG) + ["--tracking-uri", uri]
        resume = [*command, "--resume", NAME]

        def searches() -> list:
            if client.get_experiment_by_name(NAME) is None:
                return []
            return experiment_runs(tmp_path, NAME, "search", uri)

        # 1. Ctrl-C
        done = signal_when(command, lambda: any("val_acc" in r.data.metrics for r in searches()), signal.SIGINT)
        assert done.returncode == 130, done.stdout[-3000:]
        assert f"--resume {NAME}" in done.stdout and "Tuner.restore" not in done.stdout, done.stdout[-3000:]
        assert_cleanly_interrupted(tmp_path, uri, done.stdout)
        states = [(r.info.status, r.data.tags.get("status")) for r in searches()]
        tags = [tag for _, tag in states]
        assert "interrupted" in tags and "early_stopped" not in tags, f"{states}\n{done.stdout[-3000:]}"
        assert not list(tmp_path.glob("ray_results/*-results.csv"))  # no half results table
        first_trial = {r.info.run_id for r in searches()}

        # 2. SIGKILL once a trial has finished
        done = signal_when(resume, lambda: any(r.info.status == "FINISHED" for r in searches()), signal.SIGKILL)
        (finished,) = [r for r in searches() if r.info.status == "FINISHED"]
        assert finished.info.run_id in first_trial  # the interrupted trial went on in its own run
        finished_epochs = len(client.get_metric_history(finished.info.run_id, "val_acc"))

        # 3. SIGTERM once the second trial has reported
        def second_reported() -> bool:
            return any("val_acc" in r.data.metrics for r in searches() if r.info.run_id != finished.info.run_id)

        done = signal_when(resume, second_reported, signal.SIGTERM)
        assert done.returncode == 143, done.stdout[-3000:]
        assert f"--resume {NAME}" in done.stdout and "SIGTERM received at time" not in done.stdout, done.stdout[-3000:]
        assert "\x1b[" not in done.stdout  # not a terminal: no colour codes (Ray's own dashboard line had them)
        assert_cleanly_interrupted(tmp_path, uri, done.stdout)
        before = {r.info.run_id for r in searches()}

        # 4. --resume finishes it
        resumed = subprocess.run(resume, check=False, capture_output=True, text=True, timeout=420)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        runs = experiment_runs(tmp_path, NAME, tracking_uri=uri)
        assert "RUNNING" not in {r.info.status for r in runs} and not (tmp_path / "mlflow.db").exists()
        assert {r.info.run_id for r in searches()} == before
        assert len(before) == 2 and len({r.data.tags["trial_id"] for r in searches()}) == 2  # no duplicated run
        assert len(client.get_metric_history(finished.info.run_id, "val_acc")) == finished_epochs  # not rerun
        retrains = experiment_runs(tmp_path, NAME, "retrain", uri)
        assert len(retrains) == len({r.data.tags["search_run_id"] for r in retrains}) <= 2
        (parent,) = experiment_runs(tmp_path, NAME, "sweep", uri)
        assert parent.info.status == "FINISHED"
        table = pd.read_csv(next(tmp_path.glob(f"ray_results/{NAME}-results.csv")))
        assert (table["status"] == "finished").all() and (table["epochs"] == EPOCHS).all()
        # what a further --resume of the finished sweep does: test_platform.py (in-process, on its sweep)
