"""Helpers for tests that run whole sweeps of ``experiments/configs/tiny.yaml`` in a fresh process and local Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from dasvit.platform import tracking

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "experiments" / "configs" / "tiny.yaml").read_text())
# The comparison scripts' smoke sweep (``experiments/configs/tiny_budget.yaml``, seed 0), recorded: the smoke tests
# of ``sweep_vs_baselines.py`` and ``cnn_gap.py`` start from its results table, and ``test_platform.py`` checks that
# a real sweep still writes its columns.
RECORDED_SWEEP = REPO / "tests" / "data" / "tiny_budget_sweep-results.csv"


def sweep_command(workdir: Path, name: str, config: dict) -> list[str]:
    """Write ``config`` beside the sweep and return the command line of a sweep named ``name`` in ``workdir``."""
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return [sys.executable, str(REPO / "experiments" / "sweep.py"), "--config", str(path), "--workdir", str(workdir),
            "--name", name, "--experiment", name, "--address", "local"]


def run_sweep(workdir: Path, name: str, config: dict, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """One whole sweep in a fresh process and a fresh local Ray, so that fault variables reach its workers."""
    done = subprocess.run(sweep_command(workdir, name, config), env={**os.environ, **(env or {})},
                          check=False, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def experiment_runs(workdir: Path, experiment: str, kind: str | None = None, tracking_uri: str | None = None) -> list:
    """The MLflow runs of ``experiment`` in ``tracking_uri`` (default: ``workdir``'s SQLite store), only those tagged
    ``kind`` when given."""
    client = tracking.client_for(tracking_uri or tracking.default_tracking_uri(workdir))
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return [r for r in runs if kind is None or r.data.tags.get(tracking.KIND_TAG) == kind]
