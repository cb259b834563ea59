"""Interrupts of a real sweep's driver (its own local Ray, started by ``experiments/sweep.py --address local``):
Ctrl-C and SIGTERM stop it cleanly, and ``--resume`` finishes it exactly."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from sweep_runs import TINY, experiment_runs, sweep_command

from dasvit.platform import tracking
from dasvit.platform.local_server import mlflow_server

pytestmark = pytest.mark.slow  # whole sweeps in Ray


def interrupt_sweep(workdir: Path, name: str, signum: int,
                    tracking_uri: str | None = None) -> tuple[list[str], subprocess.CompletedProcess]:
    """Start a small sweep (tracked in ``workdir``'s SQLite file, or at ``tracking_uri``), send ``signum`` to its
    driver (as Ctrl-C, ``timeout`` or a scheduler would) once the first trial has reported epoch 1 of its 3;
    returns the command line and the finished driver."""
    config = {**TINY, "retrain": {"top_k": 2, "epochs": 1},
              "search": {**TINY["search"], "stages": [{"depth": 1, "epochs": 2}, {"depth": 2, "epochs": 1, "ops": 2}]}}
    args = sweep_command(workdir, name, config) + (["--tracking-uri", tracking_uri] if tracking_uri else [])
    sweep = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    client = tracking.client_for(tracking_uri or tracking.default_tracking_uri(workdir))
    deadline, reported = time.monotonic() + 300, False
    while not reported and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.5)
        if (tracking_uri or (workdir / "mlflow.db").exists()) and client.get_experiment_by_name(name) is not None:
            reported = any("val_acc" in r.data.metrics for r in experiment_runs(workdir, name, "search", tracking_uri))
    assert reported and sweep.poll() is None
    sweep.send_signal(signum)
    output, _ = sweep.communicate(timeout=180)
    return args, subprocess.CompletedProcess(args, sweep.returncode, output)


def assert_cleanly_interrupted(workdir: Path, name: str, tracking_uri: str | None = None) -> None:
    """No retraining started, nothing left RUNNING, the sweep's run KILLED with status=interrupted."""
    runs = experiment_runs(workdir, name, tracking_uri=tracking_uri)
    assert "retrain" not in [r.data.tags.get(tracking.KIND_TAG) for r in runs]
    assert "RUNNING" not in {r.info.status for r in runs}
    (parent,) = experiment_runs(workdir, name, "sweep", tracking_uri)
    assert parent.info.status == "KILLED" and parent.data.tags["status"] == "interrupted"


def test_sigterm_stops_the_sweep_and_resume_finishes_it_exactly_on_a_tracking_server(tmp_path):
    """SIGTERM (``timeout``, Slurm, Kubernetes) must reach our handler, not Ray's, which dumps a stack and exits with
    the MLflow runs left RUNNING: exit 143, everything closed, the resume command shown. Tracked on a real
    ``mlflow server`` over HTTP, as on a cluster. ``--resume`` then finishes the sweep in the same runs there: one
    search run and at most one retraining per trial, real epoch counts; a second ``--resume`` retrains nothing."""
    with mlflow_server(tmp_path / "server") as server:
        uri = server.uri
        args, done = interrupt_sweep(tmp_path, "terminated", signal.SIGTERM, uri)
        assert done.returncode == 143, done.stdout[-3000:]
        assert "--resume terminated" in done.stdout and "SIGTERM received at time" not in done.stdout
        assert "\x1b[" not in done.stdout  # not a terminal: no colour codes (Ray's own dashboard line had them)
        assert_cleanly_interrupted(tmp_path, "terminated", uri)
        before = {r.info.run_id for r in experiment_runs(tmp_path, "terminated", "search", uri)}

        resumed = subprocess.run([*args, "--resume", "terminated"], check=False, capture_output=True, text=True,
                                 timeout=420)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        runs = experiment_runs(tmp_path, "terminated", tracking_uri=uri)
        searches = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "search"]
        retrains = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "retrain"]
        assert before <= {r.info.run_id for r in searches}
        assert len(searches) == 2 and len({r.data.tags["trial_id"] for r in searches}) == 2
        assert len(retrains) == len({r.data.tags["search_run_id"] for r in retrains}) <= 2
        assert "RUNNING" not in {r.info.status for r in runs} and not (tmp_path / "mlflow.db").exists()
        table = pd.read_csv(next(tmp_path.glob("ray_results/terminated-results.csv")))
        finished = table[table["status"] == "finished"]
        assert len(finished) >= 1 and (finished["epochs"] == 3).all()

        again = subprocess.run([*args, "--resume", "terminated"], check=False, capture_output=True, text=True,
                               timeout=420)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert len(experiment_runs(tmp_path, "terminated", "retrain", uri)) == len(retrains)  # not retrained again


def test_ctrl_c_stops_the_sweep_cleanly(tmp_path):
    """SIGINT once the first trial has reported epoch 1 of its 3: no retraining starts, every run that was RUNNING
    ends KILLED with status=interrupted (the sweep's too, never early_stopped), no half results table, the
    console names our --resume, the exit status is 130. (What --resume then does: the SIGTERM test above.)"""
    _, done = interrupt_sweep(tmp_path, "interrupted", signal.SIGINT)
    output = done.stdout
    assert done.returncode == 130, output[-3000:]
    assert "--resume interrupted" in output and "Tuner.restore" not in output
    assert_cleanly_interrupted(tmp_path, "interrupted")

    searches = experiment_runs(tmp_path, "interrupted", "search")
    assert any(r.data.tags.get("status") == "interrupted" for r in searches)
    assert all(r.data.tags.get("status") != "early_stopped" for r in searches)
    assert not list(tmp_path.glob("ray_results/*-results.csv"))  # no half results table
