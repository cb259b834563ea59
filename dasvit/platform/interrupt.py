"""Ctrl-C (SIGINT) or SIGTERM stops a sweep cleanly instead of letting it run on.

Ray Tune stops its loop gracefully on SIGUSR1 (and on SIGINT, but then ``fit()`` returns as if the sweep had
finished, and the driver would go on to retrain half-searched genotypes). So Tune's own SIGINT handler is switched
off, both signals are routed to SIGUSR1 once Tune listens for it, and the driver asks ``Interrupt.signum`` after
each phase: set, it starts nothing new, marks what was running as interrupted and exits 128 + signal number.
A second signal while stopping raises ``KeyboardInterrupt`` at once. Enter it after ``ray.init``: Ray's driver
installs a C-level SIGTERM handler that dumps a stack and exits, leaving MLflow runs RUNNING (as when
``timeout`` stops a sweep); handlers installed later take precedence.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType


def _not_tune_restore_advice(record: logging.LogRecord) -> bool:
    return "Tuner.restore" not in record.getMessage()  # ours is --resume NAME, printed by the sweep


class Interrupt:
    """A context manager: inside it SIGINT and SIGTERM set ``signum``; on exit the previous handlers return."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupt:
        self._previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._tune_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for sig in self._previous:
            signal.signal(sig, self._handle)
        logging.getLogger("ray.tune.tune").addFilter(_not_tune_restore_advice)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        logging.getLogger("ray.tune.tune").removeFilter(_not_tune_restore_advice)
        if self._tune_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._tune_env

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(f"\n{signal.Signals(signum).name} received: stopping the sweep (the running trials keep their last "
              "checkpoint; nothing new starts) ...", file=sys.stderr, flush=True)
        if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None):  # Tune is listening
            os.kill(os.getpid(), signal.SIGUSR1)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""
