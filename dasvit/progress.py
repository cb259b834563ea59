"""Progress of a long loop, epoch by epoch: a tqdm bar with an ETA on a terminal, and one plain line per epoch
(with elapsed time and ETA) where the output is a log, a pipe or CI, so that nobody waits in silence and no
terminal control codes end up in a file."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from tqdm.auto import tqdm


class EpochProgress:
    def __init__(self, total: int, desc: str, enabled: bool, initial: int = 0):
        terminal = sys.stderr.isatty()
        self.total, self.desc, self.done, self.initial = total, desc, initial, initial
        self.plain = enabled and not terminal
        self.bar = tqdm(total=total, initial=initial, desc=desc, disable=not (enabled and terminal))
        self.start = time.perf_counter()

    def update(self, **fields: object) -> None:
        self.done += 1
        self.bar.update(1)
        self.bar.set_postfix(**fields)
        if self.plain:
            elapsed = time.perf_counter() - self.start
            eta = elapsed / (self.done - self.initial) * (self.total - self.done)
            shown = " ".join(f"{k} {v}" for k, v in fields.items())
            print(f"{self.desc}: epoch {self.done}/{self.total} {shown} (elapsed {elapsed:.0f} s, "
                  f"about {eta:.0f} s left)", file=sys.stderr, flush=True)

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.close()
