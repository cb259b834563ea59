"""Retraining a genotype from scratch as a plain network, with a standard ViT recipe."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from dasvit.config import RetrainConfig
from dasvit.data import ImageData, make_loader, retrain_splits, selection_split
from dasvit.genotype import Genotype
from dasvit.io import atomic_write_text
from dasvit.metrics import count_macs, count_params, evaluate
from dasvit.model import DiscreteViT, build_model
from dasvit.precision import autocast_forward
from dasvit.progress import EpochProgress
from dasvit.saved_model import ModelCard, save_model
from dasvit.seeding import derived_seed, seed_everything

PLATEAU_WINDOW = 10  # epochs


@dataclass
class RetrainResult:
    test_acc: float
    test_loss: float
    params: int
    macs: int
    epochs: int
    seconds: float
    late_gain: float  # best accuracy of the last PLATEAU_WINDOW epochs minus the best before them: ~0 at plateau
    val_acc: float | None = None  # on the data set's selection split, where it has one (what selection reads)


def late_gain(accuracies: list[float], window: int = PLATEAU_WINDOW) -> float:
    """How much the last ``window`` epochs improved on the best before them; NaN when there is no 'before'."""
    if len(accuracies) <= window:
        return float("nan")
    return max(accuracies[-window:]) - max(accuracies[:-window])


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup from 1% of the lr, then cosine decay to 0."""
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps))
    if warmup_steps == 0:
        return cosine
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=warmup_steps)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


def retrain(
    genotype: Genotype,
    config: RetrainConfig,
    data: ImageData,
    out_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    precision: str = "fp32",
) -> RetrainResult:
    """Train ``genotype``'s network from scratch on train + search-val and report test accuracy, params and MACs;
    with ``out_dir``, leave a model folder there (``dasvit.saved_model``) that ``dasvit.load`` opens."""
    config.validate(genotype.patch_size)
    seed_everything(derived_seed(config.seed, 0))
    image_size = config.data.resolved_image_size
    model: DiscreteViT = build_model(genotype, image_size, data.in_chans, data.num_classes)
    result = train_from_scratch(model, config, data, out_dir, device, progress, on_epoch_end, precision)
    if out_dir is not None:
        card = ModelCard(data.name, image_size, data.in_chans, data.mean, data.std, data.class_names, result.test_acc,
                         result.params, result.macs, genotype.id, config.seed)
        save_model(out_dir, model, genotype, card)
    return result


def _epoch_scores(model: nn.Module, selection_set: Dataset | None, test_set: Dataset,
                  device: torch.device) -> dict[str, float]:
    """What one epoch is judged by: the selection split where the data set holds one out (the test split is then
    read once, at the end), else the test split."""
    if selection_set is None:
        test_loss, test_acc = evaluate(model, test_set, device)
        return {"test_loss": test_loss, "test_acc": test_acc}
    val_loss, val_acc = evaluate(model, selection_set, device)
    return {"val_loss": val_loss, "val_acc": val_acc}


def train_from_scratch(
    model: nn.Module,
    config: RetrainConfig,
    data: ImageData,
    out_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    precision: str = "fp32",
) -> RetrainResult:
    """The retraining recipe for any image classifier, so that baselines (a hand ViT, a CNN) get the same one."""
    with cpu_threads(config.threads):
        return _train(model, config, data, out_dir, device, progress, on_epoch_end, precision)


@contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block, then restored: a float sum splits differently
    over 1 and 2 threads, so the thread count is part of what makes a retraining's result."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(model: nn.Module, config: RetrainConfig, data: ImageData, out_dir: str | Path | None,
           device: str | torch.device, progress: bool, on_epoch_end: Callable[[dict[str, Any]], None] | None,
           precision: str) -> RetrainResult:
    device = torch.device(device)
    model = model.to(device)
    image_size = config.data.resolved_image_size
    params, macs = count_params(model), count_macs(model, image_size, data.in_chans)
    model = autocast_forward(model, device, precision)  # after counting: the counter wants the plain forward
    train_set, test_set = retrain_splits(data, image_size)
    selection_set = selection_split(data, image_size)
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine(optimizer, config.warmup_epochs * steps_per_epoch, config.epochs * steps_per_epoch)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    with EpochProgress(config.epochs, "retrain", progress) as bar:
        for epoch in range(config.epochs):
            seed = derived_seed(config.seed, 1, epoch)
            seed_everything(seed)
            loss_sum, correct, count = 0.0, 0, 0
            for images, labels in make_loader(train_set, config.batch_size, shuffle=True, seed=seed):
                images, labels = images.to(device), labels.to(device)
                logits = model(images)
                loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                loss_sum += float(loss.detach()) * len(labels)
                correct += int((logits.argmax(1) == labels).sum())
                count += len(labels)
            row = {"epoch": epoch, "lr": scheduler.get_last_lr()[0], "train_loss": loss_sum / count,
                   "train_acc": correct / count}
            row.update(_epoch_scores(model, selection_set, test_set, device))
            rows.append(row)
            if out_dir is not None:
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                atomic_write_text(Path(out_dir) / "metrics.csv", pd.DataFrame(rows).to_csv(index=False))
            if on_epoch_end is not None:
                on_epoch_end(rows[-1])
            bar.update(**{k: f"{row[k]:.3f}" for k in ("val_acc", "test_acc") if k in row})
    if selection_set is None:  # the test split was each epoch's score
        test_loss, test_acc, watched = rows[-1]["test_loss"], rows[-1]["test_acc"], "test_acc"
    else:  # read once, now
        (test_loss, test_acc), watched = evaluate(model, test_set, device), "val_acc"
    result = RetrainResult(test_acc, test_loss, params, macs, config.epochs, time.perf_counter() - start,
                           late_gain([row[watched] for row in rows]), rows[-1].get("val_acc"))
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_text(out / "result.json", json.dumps(asdict(result), indent=2) + "\n")
    return result
