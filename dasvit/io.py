"""Crash-safe file writes: a reader sees the old file or the complete new one, never a truncated one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any


def _atomic_replace(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    _atomic_replace(Path(path), lambda handle: handle.write(data))


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read."""


class ModelError(ValueError):
    """A model folder, card or weights file that cannot be used; the message names the file."""


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch  # here, not at the top: the torch-free modules write text through this module too

    _atomic_replace(Path(path), lambda handle: torch.save(obj, handle))
