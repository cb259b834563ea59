"""A sweep's name and its state file ``<name>-dasvit_sweep.json`` (the MLflow parent run and the trial setup),
which ``--resume`` reads back.

Names are claimed by creating the state file exclusively, so two sweeps started in the same second in one folder
get separate names, results and Optuna studies. A damaged state file or Optuna study, or a ``--resume`` that could
mean several sweeps, is a usage error (exit 2) that names the file and what to do, found before anything changes.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from dasvit.config import ConfigError
from dasvit.io import atomic_write_text

STATE_FILE = "dasvit_sweep.json"
LATEST = "latest"  # what ``--resume`` without a name asks for


@dataclass(frozen=True)
class SweepState:
    name: str
    parent_run_id: str
    setup: dict[str, Any]  # TrialSetup.to_dict()


def state_path(folder: Path, name: str) -> Path:
    return folder / f"{name}-{STATE_FILE}"


def optuna_path(folder: Path, name: str) -> Path:
    return folder / f"{name}-optuna.db"


def claim_name(folder: Path, explicit: str | None, default: str) -> str:
    """``explicit`` if no sweep has it yet (else a usage error); otherwise the first free one of ``default``,
    ``default-2``, ``default-3`` ... The state file is created empty here and written by ``write_state``."""
    folder.mkdir(parents=True, exist_ok=True)
    candidates = [explicit] if explicit else (default if n == 1 else f"{default}-{n}" for n in itertools.count(1))
    for name in candidates:
        try:
            with open(state_path(folder, name), "x"):
                return name
        except FileExistsError:
            if explicit:
                raise ConfigError(f"a sweep named {name!r} already exists under {folder}: continue it with "
                                  f"--resume {name}, or choose another --name") from None
    raise AssertionError("unreachable")


def write_state(folder: Path, state: SweepState) -> None:
    atomic_write_text(state_path(folder, state.name), json.dumps(
        {"name": state.name, "parent_run_id": state.parent_run_id, "setup": state.setup}, indent=2))


def read_state(path: Path) -> SweepState:
    try:
        data = json.loads(path.read_text())
        return SweepState(str(data["name"]), str(data["parent_run_id"]), dict(data["setup"]))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"sweep state file {path} is damaged ({type(err).__name__}: {err}): rerun the sweep "
                          "without --resume, or restore the file from a backup") from None


def check_optuna_study(path: Path, name: str) -> None:
    """The sweep's Optuna study must open: a resumed sweep goes on sampling from it. (Opening a missing file would
    create it, so a missing one is refused before Optuna sees it.)"""
    try:
        if not path.is_file():
            raise FileNotFoundError("no such file")
        optuna.load_study(study_name=name, storage=optuna.storages.RDBStorage(f"sqlite:///{path}"))
    except Exception as err:  # noqa: BLE001 - whatever broke, the study cannot be continued
        raise ConfigError(f"Optuna study {path} of sweep {name!r} is damaged or missing "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:200]}): rerun the sweep without "
                          "--resume, or restore the file from a backup") from None


def find_resumable(folder: Path, wanted: str, client: Any) -> SweepState:
    """The sweep ``--resume`` means: the one named, or without a name the only one not yet finished."""
    if wanted != LATEST:
        path = state_path(folder, wanted)
        if not path.exists():
            known = ", ".join(sorted(p.name.removesuffix(f"-{STATE_FILE}") for p in folder.glob(f"*-{STATE_FILE}")))
            raise ConfigError(f"no sweep {wanted!r} to resume under {folder}" + (f" (there: {known})" if known else ""))
    else:
        unfinished = [p for p in sorted(folder.glob(f"*-{STATE_FILE}")) if not _finished(p, client)]
        if len(unfinished) != 1:
            listed = "".join(f"\n  --resume {p.name.removesuffix(f'-{STATE_FILE}')}" for p in unfinished)
            raise ConfigError(f"--resume without a name needs exactly one unfinished sweep under {folder}, found "
                              f"{len(unfinished)}" + (f"; name one of them:{listed}" if unfinished else ""))
        path = unfinished[0]
    state = read_state(path)
    check_optuna_study(optuna_path(folder, state.name), state.name)
    return state


def _finished(path: Path, client: Any) -> bool:
    try:
        return client.get_run(read_state(path).parent_run_id).info.status == "FINISHED"
    except Exception:  # noqa: BLE001 - a damaged state or a lost run is not finished: it is listed, not skipped
        return False

