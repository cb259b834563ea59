"""A search's output folder: what it writes after every epoch, and resuming from it.

Everything is written atomically (``dasvit.io``), so a kill leaves the previous epoch's complete files. A checkpoint
that cannot be read anyway (truncated by a full disk, edited, from another program) raises ``CheckpointError``
naming the file and what to do, instead of a PyTorch traceback.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import torch

from dasvit.io import CheckpointError, atomic_torch_save, atomic_write_text


class Resumable(Protocol):
    """What ``resume`` needs of a search: where its tensors go and how it takes a state back."""

    device: torch.device

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

CHECKPOINT = "checkpoint.pt"
GENOTYPE = "genotype.json"


def write_outputs(state: dict[str, Any], out_dir: Path) -> None:
    """From a search's state (``SearchRun.state_dict``): config.json, metrics.csv (one row per epoch),
    alpha_history.json and the checkpoint itself."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.json", json.dumps(state["config"], indent=2) + "\n")
    atomic_write_text(out_dir / "metrics.csv", pd.DataFrame(state["history"]).to_csv(index=False))
    alpha = {"ops": list(state["config"]["ops"]), "epochs": state["alpha_history"], "stages": state["stage_summaries"]}
    atomic_write_text(out_dir / "alpha_history.json", json.dumps(alpha) + "\n")
    atomic_torch_save(out_dir / CHECKPOINT, state)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is unreadable ({str(err).splitlines()[0][:200]}): rerun without --resume "
            "(into a new --out), or restore the file from a backup"
        ) from None
    if not isinstance(state, dict) or "config" not in state:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a dasvit search checkpoint: rerun without --resume")
    return state


def resume(run: Resumable, out_dir: str | Path) -> bool:
    """Load ``out_dir``'s checkpoint into ``run`` if there is one; return whether it did."""
    path = Path(out_dir) / CHECKPOINT
    if not path.is_file():
        return False
    run.load_state_dict(load_checkpoint(path, run.device))
    return True
