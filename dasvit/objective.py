"""Scoring a searched genotype by what the user gets from it.

The supernet's search-val accuracy ranks good genotypes backwards (``experiments/results/objective.md``): it
measures weights trained inside a mixture of ops, not the network the genotype becomes. The proxy objective trains
the derived genotype from scratch with the retraining recipe (``dasvit.retrain``) for a few epochs on the search's
train half and scores it on the search-val half: the quantity the final retraining optimises, read early. It never
touches the test split.

A ``max_macs`` budget turns any score >= 0 (an accuracy, a parameter count) into a constrained one: a network over
budget scores ``1 - macs/max_macs`` (< 0), below every network within it, and closer to feasible the smaller its
excess.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from dasvit.config import DataConfig, RetrainConfig
from dasvit.data import ImageData, search_holdout
from dasvit.genotype import Genotype
from dasvit.retrain import retrain
from dasvit.vocabulary import objective_spec, resolve

if TYPE_CHECKING:
    from dasvit.epoch_record import EpochRecord
    from dasvit.search import SearchRun


@dataclass(frozen=True)
class ScoreInputs:
    """What a trial objective's scorer (``dasvit.vocabulary.ObjectiveSpec.scorer``) may read at an epoch's end."""

    search: SearchRun
    record: EpochRecord
    params: int  # of the genotype the search would hand back now
    macs: int
    data: ImageData
    proxy_epochs: int
    precision: str


def params_score(inputs: ScoreInputs) -> float:
    return inputs.params  # an int: the results table prints a count


def supernet_score(inputs: ScoreInputs) -> float:
    return inputs.record.val_acc


def proxy_objective(inputs: ScoreInputs) -> float:
    config, search = inputs.search.config, inputs.search
    return proxy_score(search.genotype(), inputs.data, config.data, split_seed=config.seed, epochs=inputs.proxy_epochs,
                       seed=config.seed, device=search.device, precision=inputs.precision).val_acc


def scorer(objective: str) -> Callable[[ScoreInputs], float]:
    """The scoring function the registered ``objective`` names, imported."""
    return resolve(objective_spec(objective).scorer)


@dataclass(frozen=True)
class ProxyScore:
    val_acc: float  # search-val accuracy after the proxy's last epoch
    seconds: float
    curve: tuple[float, ...]  # search-val accuracy after each epoch


def proxy_score(genotype: Genotype, data: ImageData, data_config: DataConfig, split_seed: int, epochs: int,
                seed: int, device: str | torch.device = "cpu", precision: str = "fp32") -> ProxyScore:
    """Retrain ``genotype`` from scratch for ``epochs`` epochs on the train half of the search split ``split_seed``
    and score it on its search-val half. The caller's random streams are left as they were, so scoring a search
    part-way changes nothing that the search does next."""
    curve: list[float] = []
    config = RetrainConfig(data=data_config, epochs=epochs, seed=seed)
    state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        result = retrain(genotype, config, search_holdout(data, split_seed), device=device, precision=precision,
                         on_epoch_end=lambda row: curve.append(row["test_acc"]))
    random.setstate(state[0])
    np.random.set_state(state[1])
    return ProxyScore(result.test_acc, result.seconds, tuple(curve))


def within_budget(score: float, macs: int, max_macs: int | None) -> float:
    """``score`` if ``macs`` fits the budget, else ``1 - macs / max_macs``: negative, and higher the closer it is."""
    if max_macs is None or macs <= max_macs:
        return score
    return 1.0 - macs / max_macs
