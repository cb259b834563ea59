"""Comma-separated numbers on the command line (``--seeds 0,1,2``, ``--ratios 0.25,0.5``) as an argparse ``type``:
a bad item is a usage error that names it (exit 2) before anything runs or is written, and every script reads
its lists by one rule."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class NumberList:
    """Parses ``"a,b,c"`` into numbers of ``kind`` (int or float) within [``minimum``, ``maximum``] (``minimum``
    itself excluded with ``above_minimum``); an empty text is an empty list only with ``empty_ok``."""

    kind: type[int] | type[float]
    minimum: float | None = None
    maximum: float | None = None
    above_minimum: bool = False
    empty_ok: bool = False

    def __call__(self, text: str) -> list[int] | list[float]:
        items = [item.strip() for item in text.split(",")]
        if items == [""] and self.empty_ok:
            return []
        values = []
        for item in items:
            try:
                value = self.kind(item)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r}: {item!r} is not {self._noun}") from None
            if not math.isfinite(value) or not self._within(value):
                raise argparse.ArgumentTypeError(f"{text!r}: {item} is not {self._bounds}")
            values.append(value)
        return values

    def _within(self, value: float) -> bool:
        if self.minimum is not None and (value <= self.minimum if self.above_minimum else value < self.minimum):
            return False
        return self.maximum is None or value <= self.maximum

    @property
    def _noun(self) -> str:
        return "an integer" if self.kind is int else "a number"

    @property
    def _bounds(self) -> str:
        low = "" if self.minimum is None else f"{'>' if self.above_minimum else '>='} {self.minimum:g}"
        high = "" if self.maximum is None else f"<= {self.maximum:g}"
        return " ".join([self._noun, " and ".join(part for part in (low, high) if part)]).rstrip()


SEEDS = NumberList(int, minimum=0)
KEEP_RATIOS = NumberList(float, minimum=0, maximum=1, above_minimum=True)
LAMBDAS = NumberList(float, minimum=0)
