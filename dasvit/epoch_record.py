"""What a search epoch reports: the train figures of its steps, the search-val figures after it, summed over
data-parallel ranks, and the statistics of its alpha."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from dasvit.distributed import sum_over_ranks
from dasvit.metrics import evaluate_sums


@dataclass
class EpochRecord:
    stage: int
    depth: int
    epoch: int  # within the stage
    global_epoch: int
    lr: float
    train_loss: float
    train_acc: float
    val_loss: float  # on the whole search-val split after the epoch
    val_acc: float
    fairness_penalty: float
    skip_share: float  # mean softmax weight of 'skip' over all edges
    alpha_entropy: float  # mean entropy of the edge mixtures (nats)
    seconds: float


def train_figures(totals: np.ndarray, device: torch.device) -> dict[str, float]:
    """Mean train loss and accuracy over every rank's steps, from (loss sum, correct, count)."""
    loss_sum, correct, count = sum_over_ranks(list(totals), device)
    return {"train_loss": float(loss_sum / count), "train_acc": float(correct / count)}


def val_figures(model: nn.Module, val_set: Dataset, device: torch.device, shard: tuple[int, int]) -> dict[str, float]:
    """Loss and accuracy on the whole search-val split, each rank evaluating its shard."""
    loss_sum, correct, count = sum_over_ranks(evaluate_sums(model, val_set, device, shard=shard), device)
    return {"val_loss": loss_sum / count, "val_acc": correct / count}
