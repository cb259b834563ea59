"""Fault injection on real sweeps (each its own local Ray, started by ``experiments/sweep.py --address local``):
a Ray Train worker killed mid-search, a trial that raises; plus crash-safe writes under SIGKILL. Interrupts of the
sweep driver (Ctrl-C, SIGTERM) are in ``test_interrupts.py``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from sweep_runs import TINY, experiment_runs, run_sweep

from dasvit.platform import tracking
from dasvit.platform.trial_worker import FAULT_ENV, FAULT_ONCE_ENV


@pytest.mark.slow
def test_killed_worker_resumes_from_its_checkpoint_with_the_same_genotype(tmp_path):
    """SIGKILL rank 0 right after it reported global epoch 1 (of 4) with its checkpoint: Ray Train restarts the
    group from the last registered checkpoint, no finished epoch is lost, and the genotype equals that of its twin:
    the sweep's other trial, which one-point tune ranges give the same config, and which runs uninterrupted."""
    one_point = {name: {"low": 0.5, "high": 0.5} for name in ("fairness_lambda", "keep_ratio")}
    config = {**TINY, "num_trials": 2, "max_failures": 1, "retrain": {"top_k": 0}, "tune": one_point,
              "asha": {"grace_period": 4, "reduction_factor": 2},  # no early stopping: both trials run 4 epochs
              "search": {**TINY["search"], "stages": [{"depth": 1, "epochs": 2}, {"depth": 2, "epochs": 2, "ops": 2}]}}
    once = tmp_path / "fault-fired"
    run_sweep(tmp_path, "killed", config, {FAULT_ENV: "kill@1", FAULT_ONCE_ENV: str(once)})
    assert once.exists()  # the worker really was killed

    client = tracking.client_for(tracking.default_tracking_uri(tmp_path))
    killed, twin = sorted(experiment_runs(tmp_path, "killed", "search"), key=lambda r: r.info.start_time)
    assert killed.data.params == twin.data.params  # the same config: the first trial is the one killed
    assert {r.info.status for r in (killed, twin)} == {"FINISHED"} and "error" not in killed.data.tags
    history = client.get_metric_history(killed.info.run_id, "val_acc")
    # Every epoch is there. Ray Train registers a reported checkpoint asynchronously, so the epoch whose
    # checkpoint was not yet registered at the kill may run again: deterministically, logging the same value.
    values = {}
    for point in history:
        values.setdefault(point.step, set()).add(point.value)
    assert sorted(values) == [0, 1, 2, 3] and len(history) <= 5
    assert all(len(v) == 1 for v in values.values()), values
    assert len(client.get_metric_history(twin.info.run_id, "val_acc")) == 4  # the twin was not interrupted
    genotypes = [tracking.load_genotype_artifact(client, run.info.run_id) for run in (killed, twin)]
    assert genotypes[0] == genotypes[1]
    assert killed.data.metrics["val_acc"] == twin.data.metrics["val_acc"]


@pytest.mark.slow
def test_raising_trial_ends_failed_and_the_others_finish(tmp_path):
    """The first trial raises after its first epoch (no retries): its run ends FAILED with the error recorded, the
    second trial finishes, and the sweep's table and summary list the failure."""
    config = {**TINY, "max_failures": 0, "retrain": {"top_k": 0}, "asha": {"grace_period": 2, "reduction_factor": 2}}
    done = run_sweep(tmp_path, "raising", config,
                     {FAULT_ENV: "raise@0", FAULT_ONCE_ENV: str(tmp_path / "fault-fired")})
    assert "1 trial(s) failed" in done.stdout
    assert "Ray dashboard: http://127.0.0.1:" in done.stdout  # served on loopback only

    runs = experiment_runs(tmp_path, "raising", "search")
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
