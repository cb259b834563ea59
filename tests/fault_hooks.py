"""Fault injection for the reliability tests, run inside a real trial's rank-0 worker through the trial worker's
epoch hook (``DASVIT_EPOCH_HOOK=fault_hooks:inject_fault``, with this folder on ``PYTHONPATH``)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

FAULT_ENV = "DASVIT_TEST_FAULT"  # "raise@<epoch>" or "kill@<epoch>" (global epoch, after its checkpoint), comma-separated
FAULT_ONCE_ENV = "DASVIT_TEST_FAULT_ONCE"  # a path: fault i fires only while <path>.<i> does not exist


def inject_fault(epoch: int) -> None:
    """At ``epoch`` the first listed fault for it that is not spent fires, so that one sweep can fail its trials one
    after another."""
    once = os.environ.get(FAULT_ONCE_ENV)
    for index, fault in enumerate(os.environ.get(FAULT_ENV, "").split(",")):
        kind, _, at = fault.partition("@")
        if not at or epoch != int(at):
            continue
        if once:
            try:
                Path(f"{once}.{index}").touch(exist_ok=False)
            except FileExistsError:
                continue
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError(f"injected failure at epoch {epoch} ({FAULT_ENV}={fault})")
