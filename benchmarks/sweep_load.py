"""A sweep under load: many concurrent trials logging every epoch to one MLflow tracking server.

For each concurrency level C (trials at a time), one sweep of ``--trials-per-level x C`` (at most ``--max-trials``)
1-worker trials of the tiny search space (scikit-learn digits, 2 epochs) runs against a ``mlflow server`` that this
script starts on 127.0.0.1, with ``2 / C`` CPUs per trial. Afterwards every trial is checked against what it told
Tune (the lines of its ``result.json``): each reported epoch must have its ``val_acc`` point in MLflow, once;
each search run its ``genotype.json`` and ``alpha_history.json``; no run may stay RUNNING; the server's log must
hold no HTTP 5xx answer and no "database is locked". While the sweep runs, a probe logs one metric point to the
server every 0.5 s and times the call: the store's write latency as the load grows. The Tune loop's overhead per
trial is read from the trials' own ``overhead_*_s`` metrics (worker-group start, teardown) and the sweep's wall
time per trial. Each sweep is bounded by ``--timeout`` seconds; the script stops the server before it exits.

    python benchmarks/sweep_load.py                          # levels 1, 2, 4, 6: 4, 8, 16, 24 trials
    python benchmarks/sweep_load.py --levels 2 --trials-per-level 1 --out /tmp/smoke   # smoke size
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from dasvit.arglists import NumberList
from dasvit.machine import describe_machine
from dasvit.platform import tracking
from dasvit.platform.local_server import Server, mlflow_server

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
TINY = yaml.safe_load((REPO / "experiments" / "configs" / "tiny.yaml").read_text())


def sweep_config(trials: int, concurrent: int) -> dict[str, Any]:
    """The tiny sweep with 1-worker trials sharing the machine's 2 CPUs, no early stop, no retraining."""
    epochs = sum(stage["epochs"] for stage in TINY["search"]["stages"])
    return {**TINY, "num_trials": trials, "max_concurrent_trials": concurrent, "workers_per_trial": 1,
            "cpus_per_worker": round(2 / concurrent, 3), "objective": "params",
            "asha": {"grace_period": epochs, "reduction_factor": 2}, "retrain": {"top_k": 0, "epochs": 1}}


class WriteProbe:
    """Times one ``log_batch`` to the server every ``interval`` seconds, from its own run, while it runs."""

    def __init__(self, server: Server, interval: float = 0.5):
        self.client = tracking.client_for(server.uri)
        experiment = tracking.ensure_experiment(self.client, "load-probe")
        self.run_id = tracking.start_run(self.client, experiment, "probe", "probe")
        self.interval, self.latencies, self.errors = interval, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        step = 0
        while not self._stop.wait(self.interval):
            start = time.perf_counter()
            try:
                tracking.log_metrics(self.client, self.run_id, {"probe": float(step)}, step=step)
                self.latencies.append(time.perf_counter() - start)
            except Exception:  # noqa: BLE001 - a failed write is what the probe counts
                self.errors += 1
            step += 1

    def __enter__(self) -> WriteProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        tracking.end_run(self.client, self.run_id, "FINISHED")


def reported_epochs(storage: Path, name: str) -> dict[str, int]:
    """Trial id -> how many epochs it reported to Tune (lines of its result.json)."""
    counts = {}
    for result in (storage / name).glob("*/result.json"):
        lines = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if lines:
            counts[lines[-1]["trial_id"]] = len(lines)
    return counts


def audit(server: Server, experiment: str, reported: dict[str, int]) -> dict[str, Any]:
    """What MLflow holds against what the trials reported."""
    client = tracking.client_for(server.uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=10_000)
    searches = [r for r in runs if r.data.tags.get(tracking.KIND_TAG) == "search"]
    missing_points = duplicate_points = missing_artifacts = 0
    overheads: dict[str, list[float]] = {"worker_group_start": [], "teardown": [], "mlflow_logging": []}
    for run in searches:
        trial = run.data.tags.get("trial_id", "")
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        expected = reported.get(trial, 0)
        missing_points += max(0, expected - len(set(steps)))
        duplicate_points += len(steps) - len(set(steps))
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        missing_artifacts += len({"genotype.json", "alpha_history.json"} - names)
        for part, values in overheads.items():
            if f"overhead_{part}_s" in run.data.metrics:
                values.append(run.data.metrics[f"overhead_{part}_s"])
    return {"runs": len(runs), "search_runs": len(searches), "trials_reported": len(reported),
            "missing_runs": len(set(reported) - {r.data.tags.get("trial_id") for r in searches}),
            "running": sum(r.info.status == "RUNNING" for r in runs), "missing_points": missing_points,
            "duplicate_points": duplicate_points, "missing_artifacts": missing_artifacts,
            "points": sum(reported.values()),
            **{f"mean_{part}_s": statistics.fmean(v) if v else float("nan") for part, v in overheads.items()}}


def server_errors(server: Server) -> int:
    """HTTP 5xx answers and SQLite lock errors in the server's log."""
    log = (server.folder / "server.log").read_text(errors="replace")
    return len(re.findall(r'" 5\d\d |database is locked', log))


def run_level(server: Server, workdir: Path, concurrent: int, trials: int, timeout: float) -> dict[str, Any]:
    name = f"load-c{concurrent}"
    config = workdir / f"{name}.yaml"
    config.write_text(yaml.safe_dump(sweep_config(trials, concurrent)))
    command = [sys.executable, str(REPO / "experiments" / "sweep.py"), "--config", str(config), "--workdir",
               str(workdir), "--name", name, "--experiment", name, "--address", "local", "--tracking-uri", server.uri]
    errors_before = server_errors(server)
    start = time.perf_counter()
    with WriteProbe(server) as probe:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
    latencies = sorted(probe.latencies)
    return {"concurrent": concurrent, "trials": trials, "returncode": done.returncode, "wall_s": wall,
            "wall_per_trial_s": wall / trials,
            **audit(server, name, reported_epochs(workdir / "ray_results", name)),
            "server_errors": server_errors(server) - errors_before, "probe_errors": probe.errors,
            "write_latency_median_ms": 1e3 * latencies[len(latencies) // 2] if latencies else float("nan"),
            "write_latency_p95_ms": 1e3 * latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=NumberList(int, minimum=1), default="1,2,4,6",
                        help="trials at a time, comma-separated (default 1,2,4,6)")
    parser.add_argument("--trials-per-level", type=int, default=4, help="trials per sweep = this x the level")
    parser.add_argument("--max-trials", type=int, default=24)
    parser.add_argument("--timeout", type=float, default=900, help="seconds each sweep may run")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, mlflow_server(Path(tmp) / "server") as server:
        for concurrent in args.levels:
            trials = min(args.max_trials, args.trials_per_level * concurrent)
            rows.append(run_level(server, Path(tmp), concurrent, trials, args.timeout))
            print(pd.DataFrame(rows).to_string(index=False), flush=True)
    table = pd.DataFrame(rows)
    missing = int(table[["missing_runs", "missing_points", "missing_artifacts"]].to_numpy().sum())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "sweep_load.csv", index=False)
    summary = {"missing": missing, "running": int(table["running"].sum()),
               "errors": int(table["server_errors"].sum() + table["probe_errors"].sum()),
               "failed_sweeps": int((table["returncode"] != 0).sum()), "machine": describe_machine(), "levels": rows}
    (out / "sweep_load.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if missing == 0 and summary["running"] == 0 and summary["failed_sweeps"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
