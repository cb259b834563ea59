"""Fault injection on a real sweep (its own local Ray, started by ``experiments/sweep.py --address local``): a
trial that raises, a Ray Train worker killed mid-search; plus crash-safe writes under SIGKILL. Interrupts of the
sweep driver (Ctrl-C, SIGTERM) are in ``test_interrupts.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from fault_hooks import FAULT_ENV, FAULT_ONCE_ENV
from sweep_runs import TINY, experiment_runs, run_sweep

from dasvit.platform import tracking
from dasvit.platform.trial_worker import EPOCH_HOOK_ENV


@pytest.mark.slow
def test_a_raising_trial_ends_failed_and_a_killed_worker_resumes_with_the_same_genotype(tmp_path):
    """Three trials of one config (one-point tune ranges), one after another, with up to one restart each:

    - the first raises after global epoch 1, and again after its restart: its run ends FAILED with the error
      recorded, and the sweep's table and summary list the failure;
    - the second has rank 0 SIGKILLed right after it reported global epoch 2 (of 4) with its checkpoint: Ray Train
      restarts the group from the last registered checkpoint, no finished epoch is lost, and the genotype equals
      that of its twin, the third trial, which runs uninterrupted."""
    one_point = {name: {"low": 0.5, "high": 0.5} for name in ("fairness_lambda", "keep_ratio")}
    config = {**TINY, "num_trials": 3, "max_failures": 1, "retrain": {"top_k": 0}, "tune": one_point,
              "objective": "params",  # no proxy retrainings at stage ends: the faults are what is tested here
              "asha": {"grace_period": 4, "reduction_factor": 2},  # no early stopping: every trial runs 4 epochs
              "search": {**TINY["search"], "stages": [{"depth": 1, "epochs": 2}, {"depth": 2, "epochs": 2, "ops": 2}]}}
    once = tmp_path / "fault-fired"
    done = run_sweep(tmp_path, "faults", config, {FAULT_ENV: "raise@1,raise@2,kill@2", FAULT_ONCE_ENV: str(once),
                                                       EPOCH_HOOK_ENV: "fault_hooks:inject_fault",
                                                       "PYTHONPATH": os.pathsep.join(
                                                           [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])})
    assert all(Path(f"{once}.{i}").exists() for i in range(3))  # every fault really fired
    assert "1 trial(s) failed" in done.stdout
    assert "Ray dashboard: http://127.0.0.1:" in done.stdout  # served on loopback only

    client = tracking.client_for(tracking.default_tracking_uri(tmp_path))
    failed, killed, twin = sorted(experiment_runs(tmp_path, "faults", "search"), key=lambda r: r.info.start_time)
    assert failed.info.status == "FAILED" and "injected failure at epoch 2" in failed.data.tags["error"]
    (table,) = tmp_path.glob("ray_results/faults-results.csv")
    statuses = pd.read_csv(table).set_index("search_run_id")["status"]
    assert statuses[failed.info.run_id] == "error" and sorted(statuses) == ["error", "finished", "finished"]

    assert killed.data.params == twin.data.params  # the same config
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
