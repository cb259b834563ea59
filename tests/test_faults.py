"""Fault injection on real sweeps (each its own local Ray, started by ``experiments/sweep.py --address local``):
a Ray Train worker killed mid-search, a trial that raises; plus crash-safe writes under SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from dasvit.platform import tracking
from dasvit.platform.trial import FAULT_ENV, FAULT_ONCE_ENV

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "experiments" / "configs" / "tiny.yaml").read_text())


def run_sweep(workdir: Path, name: str, config: dict, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One whole sweep in a fresh process and a fresh local Ray, so the fault variables reach its workers."""
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    args = [sys.executable, str(REPO / "experiments" / "sweep.py"), "--config", str(path), "--workdir", str(workdir),
            "--name", name, "--experiment", name, "--address", "local"]
    done = subprocess.run(args, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def search_runs(workdir: Path, experiment: str) -> list:
    client = tracking.client_for(tracking.default_tracking_uri(workdir))
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([experiment_id], f"tags.`{tracking.KIND_TAG}` = 'search'")


def test_killed_worker_resumes_from_its_checkpoint_with_the_same_genotype(tmp_path):
    """SIGKILL rank 0 right after it reported global epoch 1 (of 4) with its checkpoint: Ray Train restarts the
    group from the last registered checkpoint, no finished epoch is lost, and the genotype equals that of an
    uninterrupted sweep with the same seed."""
    config = {**TINY, "num_trials": 1, "max_failures": 1, "retrain": {"top_k": 0},
              "search": {**TINY["search"], "stages": [{"depth": 1, "epochs": 2}, {"depth": 2, "epochs": 2, "ops": 2}]}}
    once = tmp_path / "fault-fired"
    run_sweep(tmp_path, "clean", config)
    run_sweep(tmp_path, "killed", config, {FAULT_ENV: "kill@1", FAULT_ONCE_ENV: str(once)})
    assert once.exists()  # the worker really was killed

    client = tracking.client_for(tracking.default_tracking_uri(tmp_path))
    (clean,), (killed,) = search_runs(tmp_path, "clean"), search_runs(tmp_path, "killed")
    assert killed.info.status == "FINISHED" and "error" not in killed.data.tags
    history = client.get_metric_history(killed.info.run_id, "val_acc")
    # Every epoch is there. Ray Train registers a reported checkpoint asynchronously, so the epoch whose
    # checkpoint was not yet registered at the kill may run again: deterministically, logging the same value.
    values = {}
    for point in history:
        values.setdefault(point.step, set()).add(point.value)
    assert sorted(values) == [0, 1, 2, 3] and len(history) <= 5
    assert all(len(v) == 1 for v in values.values()), values
    genotypes = [tracking.load_genotype_artifact(client, run.info.run_id) for run in (clean, killed)]
    assert genotypes[0] == genotypes[1]
    assert killed.data.metrics["val_acc"] == clean.data.metrics["val_acc"]


def test_raising_trial_ends_failed_and_the_others_finish(tmp_path):
    """The first trial raises after its first epoch (no retries): its run ends FAILED with the error recorded, the
    second trial finishes, and the sweep's table and summary list the failure."""
    config = {**TINY, "max_failures": 0, "retrain": {"top_k": 0}, "asha": {"grace_period": 2, "reduction_factor": 2}}
    done = run_sweep(tmp_path, "raising", config,
                     {FAULT_ENV: "raise@0", FAULT_ONCE_ENV: str(tmp_path / "fault-fired")})
    assert "1 trial(s) failed" in done.stdout
    assert "Ray dashboard: http://127.0.0.1:" in done.stdout  # served on loopback only

    runs = search_runs(tmp_path, "raising")
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]
    failed = next(r for r in runs if r.info.status == "FAILED")
    assert "injected failure at epoch 0" in failed.data.tags["error"]
    (table,) = tmp_path.glob("ray_results/raising-results.csv")
    statuses = pd.read_csv(table).set_index("search_run_id")["status"]
    assert statuses[failed.info.run_id] == "error"
    assert sorted(statuses) == ["error", "finished"]


WRITER = """
import sys
from dasvit.io import atomic_write_text
path, n = sys.argv[1], 0
print("ready", flush=True)
while True:
    n += 1
    atomic_write_text(path, '{"n": %d, "pad": "%s"}' % (n, "x" * 4_000_000))
"""


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.45])
def test_killed_writer_never_leaves_a_truncated_file(tmp_path, delay):
    """SIGKILL a process that rewrites a 4 MB JSON file in a loop: the file is always complete JSON and no temp
    file is left behind except, possibly, the one being written at the kill (hidden, never read)."""
    target = tmp_path / "genotype.json"
    target.write_text(json.dumps({"n": 0}))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    time.sleep(delay)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert json.loads(target.read_text())["n"] >= 0
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "genotype.json"]
    assert all(name.startswith(".genotype.json.") and name.endswith(".tmp") for name in leftovers)


def _runs(client, experiment: str) -> list:
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def interrupt_sweep(workdir: Path, name: str, signum: int) -> tuple[list[str], Any, subprocess.CompletedProcess]:
    """Start a small sweep, send ``signum`` to its driver (as Ctrl-C, ``timeout`` or a scheduler would) once the
    first trial has reported epoch 1 of its 3; returns the command line, the MLflow client and the finished driver."""
    config = {**TINY, "retrain": {"top_k": 2, "epochs": 1},
              "search": {**TINY["search"], "stages": [{"depth": 1, "epochs": 2}, {"depth": 2, "epochs": 1, "ops": 2}]}}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    args = [sys.executable, str(REPO / "experiments" / "sweep.py"), "--config", str(path), "--workdir", str(workdir),
            "--name", name, "--experiment", name, "--address", "local"]
    sweep = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    client = tracking.client_for(tracking.default_tracking_uri(workdir))
    deadline, reported = time.monotonic() + 300, False
    while not reported and time.monotonic() < deadline and sweep.poll() is None:
        time.sleep(0.5)
        if (workdir / "mlflow.db").exists() and client.get_experiment_by_name(name) is not None:
            reported = any("val_acc" in r.data.metrics
                           for r in _runs(client, name) if r.data.tags.get(tracking.KIND_TAG) == "search")
    assert reported and sweep.poll() is None
    sweep.send_signal(signum)
    output, _ = sweep.communicate(timeout=180)
    return args, client, subprocess.CompletedProcess(args, sweep.returncode, output)


def assert_cleanly_interrupted(client: Any, name: str) -> None:
    """No retraining started, nothing left RUNNING, the sweep's run KILLED with status=interrupted."""
    runs = _runs(client, name)
    assert "retrain" not in [r.data.tags.get(tracking.KIND_TAG) for r in runs]
    assert "RUNNING" not in {r.info.status for r in runs}
    (parent,) = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "sweep"]
    assert parent.info.status == "KILLED" and parent.data.tags["status"] == "interrupted"


def test_sigterm_stops_the_sweep_like_ctrl_c(tmp_path):
    """SIGTERM (``timeout``, Slurm, Kubernetes) must reach our handler, not Ray's, which dumps a stack and exits with
    the MLflow runs left RUNNING (seen on the GPU machine): exit 143, everything closed, the resume command shown."""
    _, client, done = interrupt_sweep(tmp_path, "terminated", signal.SIGTERM)
    assert done.returncode == 143, done.stdout[-3000:]
    assert "--resume terminated" in done.stdout and "SIGTERM received at time" not in done.stdout
    assert "\x1b[" not in done.stdout  # not a terminal: no colour codes (Ray's own dashboard line had them)
    assert_cleanly_interrupted(client, "terminated")


def test_ctrl_c_stops_the_sweep_and_resume_finishes_it_exactly(tmp_path):
    """SIGINT once the first trial has reported epoch 1 of its 3: no retraining starts, every run that was RUNNING
    ends KILLED with status=interrupted (the sweep's too), the console names our --resume, the exit status is 130.
    --resume then finishes the sweep: one search run and at most one retraining per trial, real epoch counts."""
    args, client, done = interrupt_sweep(tmp_path, "interrupted", signal.SIGINT)
    output = done.stdout
    assert done.returncode == 130, output[-3000:]
    assert "--resume interrupted" in output and "Tuner.restore" not in output
    assert_cleanly_interrupted(client, "interrupted")

    runs = _runs(client, "interrupted")
    searches = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "search"]
    assert any(r.data.tags.get("status") == "interrupted" for r in searches)
    assert all(r.data.tags.get("status") != "early_stopped" for r in searches)
    assert not list(tmp_path.glob("ray_results/*-results.csv"))  # no half results table

    resumed = subprocess.run([*args, "--resume", "interrupted"], capture_output=True, text=True, timeout=420)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    runs = _runs(client, "interrupted")
    searches = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "search"]
    retrains = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "retrain"]
    assert len(searches) == 2 and len({r.data.tags["trial_id"] for r in searches}) == 2
    assert len(retrains) == len({r.data.tags["search_run_id"] for r in retrains}) <= 2
    table = pd.read_csv(next(tmp_path.glob("ray_results/interrupted-results.csv")))
    finished = table[table["status"] == "finished"]
    assert len(finished) >= 1 and (finished["epochs"] == 3).all()

    again = subprocess.run([*args, "--resume", "interrupted"], capture_output=True, text=True, timeout=420)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    retrains_after = [r for r in _runs(client, "interrupted") if r.data.tags.get(tracking.KIND_TAG) == "retrain"]
    assert len(retrains_after) == len(retrains)  # a trial already retrained is not retrained again
