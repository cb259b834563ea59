"""Damaged or ambiguous sweep state is a usage error found before anything changes; sweeps started together in one
fresh folder get their own names and share the store's creation; ASHA ranks a restored trial at its true rung."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml
from ray.tune.schedulers import TrialScheduler

from dasvit.platform import tracking
from dasvit.platform.config import SweepConfig
from dasvit.platform.sweep import main
from dasvit.platform.sweep_run import make_scheduler
from dasvit.platform.sweep_state import STATE_FILE

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "experiments" / "configs" / "tiny.yaml")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def _state(folder: Path, name: str, parent_run_id: str = "0" * 32) -> None:
    (folder / f"{name}-{STATE_FILE}").write_text(json.dumps({"name": name, "parent_run_id": parent_run_id,
                                                              "setup": {}}))


def _optuna_study(folder: Path, name: str) -> None:
    optuna.create_study(study_name=name, storage=f"sqlite:///{folder / f'{name}-optuna.db'}")


def _damaged_state(folder: Path) -> None:
    (folder / f"old-{STATE_FILE}").write_text('{"name": "old", "parent_')  # cut off mid-write


def _damaged_study(folder: Path) -> None:
    _state(folder, "old")
    (folder / "old-optuna.db").write_bytes(b"not a database, but a file of the same name" * 10)


def _missing_study(folder: Path) -> None:
    _state(folder, "old")


def _two_unfinished(folder: Path) -> None:
    for name in ("first", "second"):
        _state(folder, name)
        _optuna_study(folder, name)


def _taken_name(folder: Path) -> None:
    _state(folder, "old")


DAMAGED = [
    (_damaged_state, ["--resume", "old"], "old-dasvit_sweep.json is damaged (JSONDecodeError"),
    (_damaged_state, ["--resume"], "old-dasvit_sweep.json is damaged"),
    (_damaged_study, ["--resume", "old"], "old-optuna.db of sweep 'old' is damaged or missing"),
    (_missing_study, ["--resume", "old"], "old-optuna.db of sweep 'old' is damaged or missing"),
    (_two_unfinished, ["--resume"], "needs exactly one unfinished sweep under"),
    (lambda folder: None, ["--resume"], "found 0"),
    (lambda folder: None, ["--resume", "nosuch"], "no sweep 'nosuch' to resume"),
    (_taken_name, ["--name", "old"], "a sweep named 'old' already exists"),
]


@pytest.mark.parametrize("damage,flags,needle", DAMAGED, ids=[d[2][:40] for d in DAMAGED])
def test_damaged_or_ambiguous_state_exits_2_and_changes_nothing(damage, flags, needle, tmp_path, capsys):
    storage = tmp_path / "ray_results"
    storage.mkdir()
    client = tracking.client_for(tracking.default_tracking_uri(tmp_path))
    tracking.ensure_experiment(client, "damaged", tmp_path / "mlartifacts")
    damage(storage)
    before = _snapshot(tmp_path)
    assert main(["--config", TINY, "--workdir", str(tmp_path), "--experiment", "damaged", "--address", "local",
                 *flags]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    if "rerun" in err:  # damage: the message says what to do
        assert "without --resume, or restore the file from a backup" in err
    if damage is _two_unfinished:
        assert "--resume first" in err and "--resume second" in err
    assert _snapshot(tmp_path) == before


def test_a_non_sqlite_store_exits_2_naming_the_file(tmp_path, capsys):
    store = tmp_path / "mlflow.db"
    store.write_text("this is not an SQLite database\n" * 10)
    before = _snapshot(tmp_path)
    assert main(["--config", TINY, "--workdir", str(tmp_path), "--address", "local"]) == 2
    err = capsys.readouterr().err
    assert f"MLflow store {store} is not an SQLite database" in err and "restore it from a backup" in err
    assert _snapshot(tmp_path) == before


PLAN = """
import os, sys, time
from pathlib import Path
from dasvit.platform.sweep import build_parser, load_config
from dasvit.platform.sweep_run import plan_sweep
barrier = Path(sys.argv[1])  # both go on together once both have imported everything
(barrier / str(os.getpid())).touch()
while len(list(barrier.iterdir())) < 2:
    time.sleep(0.001)
args = build_parser().parse_args(["--config", sys.argv[2], "--workdir", sys.argv[3]])
plan = plan_sweep(args, load_config(args))
print(plan.name, plan.experiment_id)
"""


@pytest.mark.slow
def test_sweeps_started_together_in_a_fresh_folder_get_their_own_names(tmp_path):
    """Both create the store (under a file lock: without it one lost the first migration and called the store
    unreachable) and claim a name in the same second: the second gets ``-2``, its own state and study."""
    barrier, workdir = tmp_path / "barrier", tmp_path / "fresh"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", PLAN, str(barrier), TINY, str(workdir)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    (name_a, experiment_a), (name_b, experiment_b) = (out.split() for out, _ in outputs)
    assert name_a != name_b and experiment_a == experiment_b
    assert {p.name for p in (workdir / "ray_results").glob(f"*-{STATE_FILE}")} == {
        f"{name_a}-{STATE_FILE}", f"{name_b}-{STATE_FILE}"}


def test_asha_ranks_a_restored_trial_at_its_true_rung():
    """After a restore Tune's training_iteration starts again at 1; the rung must come from epochs_done. A trial
    restored after 3 epochs that reports a poor objective is compared at rung 3 and stopped."""
    config = SweepConfig.load()  # the default: 9 epochs, ASHA grace period 3, reduction factor 2
    assert (config.total_epochs, config.asha.grace_period, config.asha.reduction_factor) == (9, 3, 2)
    scheduler = make_scheduler(config)
    steady, restored = SimpleNamespace(trial_id="steady"), SimpleNamespace(trial_id="restored")
    for trial in (steady, restored):
        scheduler.on_trial_add(None, trial)
    for epoch in (1, 2, 3):
        assert scheduler.on_trial_result(None, steady, {"training_iteration": epoch, "epochs_done": epoch,
                                                        "objective": 0.9}) == TrialScheduler.CONTINUE
    decision = scheduler.on_trial_result(None, restored, {"training_iteration": 1, "epochs_done": 3, "objective": 0.1})
    assert decision == TrialScheduler.STOP



@pytest.mark.parametrize("asha,stages,rungs", [
    ({"grace_period": 3, "reduction_factor": 2}, [3, 3, 3], [3, 6]),
    ({"grace_period": 15, "reduction_factor": 2}, [15, 15, 20], [15, 30]),
    ({"grace_period": 3, "reduction_factor": 2}, [3, 3, 3, 3], [3, 6, 12]),
])
def test_asha_compares_trials_only_at_stage_ends(asha, stages, rungs):
    """The rungs Ray's scheduler places are the ones the config checks, and each is a stage end: every trial is
    compared on the genotype of the same stage, at the same epoch."""
    search = {"data": {"dataset": "digits"}, "stages": [{"depth": 1 + i, "epochs": e} for i, e in enumerate(stages)]}
    config = SweepConfig.from_dict({**SweepConfig.load().to_dict(), "asha": asha, "search": search})
    placed = sorted(milestone for milestone, _ in make_scheduler(config)._brackets[0]._rungs)
    assert placed == config.asha_rungs == rungs and set(rungs) <= set(config.stage_ends)


def test_the_spelled_out_laptop_config_is_the_packaged_default():
    """``experiments/configs/laptop.yaml`` says it is the packaged default, key for key: it must stay so."""
    laptop = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "laptop.yaml"
    assert yaml.safe_load(laptop.read_text()) == yaml.safe_load(
        resources.files("dasvit.platform.configs").joinpath("default.yaml").read_text())
