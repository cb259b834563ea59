"""Where a trial's time goes besides searching: each part is logged to the trial's MLflow run as an
``overhead_<part>_s`` metric, so that ``benchmarks/ray_overhead.py`` (and a user in ``mlflow ui``) can see what
the Ray trial costs on top of the search itself."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class Overhead:
    """Seconds per named part, summed over every time the part runs."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] += max(0.0, seconds)

    @contextmanager
    def timed(self, part: str) -> Iterator[None]:
        start = time.time()
        try:
            yield
        finally:
            self.add(part, time.time() - start)

    def metrics(self) -> dict[str, float]:
        return {f"overhead_{part}_s": seconds for part, seconds in self.seconds.items()}
