"""Seeding: every random stream of a run is derived from the user's one ``--seed`` plus where it is used."""

from __future__ import annotations

import random

import numpy as np
import torch


def derived_seed(seed: int, *parts: int) -> int:
    """A well-mixed seed for the stream at ``parts`` (e.g. stage, epoch) of a run seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
