"""The progressive DASViT search loop, with per-epoch records, checkpoints and exact resume.

Every random stream (weight init, data order, augmentation) is derived from ``(seed, stage, epoch)``, so a run
resumed from the checkpoint written after epoch k replays exactly what an uninterrupted run does from there:
the same seed gives the same genotype on CPU, interrupted or not.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from dasvit.architect import Batch
from dasvit.checkpoint import GENOTYPE, write_outputs
from dasvit.config import ConfigError, SearchConfig
from dasvit.data import ImageData, make_loader, search_splits
from dasvit.distributed import average_gradients_, rank, world_size
from dasvit.epoch_record import EpochRecord, train_figures, val_figures
from dasvit.genotype import Genotype, InputSpec
from dasvit.progress import EpochProgress
from dasvit.search_stage import Execution, build_stage, next_stage_masks, stage_summary
from dasvit.seeding import derived_seed, seed_everything
from dasvit.supernet import alpha_stats
from dasvit.vocabulary import parse_op, validate_compile, validate_precision

EpochCallback = Callable[["SearchRun", EpochRecord], None]


class SearchRun:
    """One progressive search on one data set; ``run`` drives it stage by stage, epoch by epoch.

    Args:
        config: the search settings (validated here); ``batch_size`` is global over data-parallel ranks.
        data: the data set; its non-test images are split by ``config.seed`` into train and search-val.
        device: where the supernet runs.
        fused: evaluate mixed ops with ``dasvit.fused`` (same math, fewer kernels; see the README for when it pays).
            An execution choice like ``device``: not part of the config, and a checkpoint resumes either way.
        precision: ``fp32`` or ``bf16`` (autocast of the forward passes; see ``dasvit.precision``), also an
            execution choice.
        compile_mode: how the step's supernet calls are compiled, one of ``vocabulary.COMPILE_MODES`` (see
            ``dasvit.compiled``); an execution choice too. Each stage compiles anew.
    """

    def __init__(self, config: SearchConfig, data: ImageData, device: str | torch.device = "cpu", fused: bool = False,
                 precision: str = "fp32", compile_mode: str = "off"):
        self.config = config.validate()
        self.device = torch.device(device)
        self.execution = Execution(self.device, fused, validate_precision(precision),
                                   validate_compile(compile_mode, self.device.type))
        self.shard = (rank(), world_size())
        image_size = config.data.resolved_image_size
        self.input_spec = InputSpec(image_size, data.in_chans, data.num_classes)
        self.train_set, self.val_set = search_splits(data, image_size, config.seed)
        world = self.shard[1]
        if config.batch_size % world != 0:
            raise ConfigError(f"batch size {config.batch_size} is global and must divide evenly over {world} workers")
        self.rank_batch = config.batch_size // world  # batch_size is global: 1 x 64 and 2 x 32 take the same steps
        if min(len(self.train_set), len(self.val_set)) < config.batch_size:
            raise ConfigError(
                f"batch size {config.batch_size} is larger than the train ({len(self.train_set)}) "
                f"or search-val ({len(self.val_set)}) split"
            )
        self.none_columns = [k for k, name in enumerate(config.ops) if not parse_op(name).properties.discrete]
        self.skip_columns = [k for k, name in enumerate(config.ops) if parse_op(name).family == "skip"]
        self.history: list[EpochRecord] = []
        self.alpha_history: list[dict[str, Any]] = []
        self.stage_summaries: list[dict[str, Any]] = []
        self.stage = 0
        self.epochs_done = 0
        self._build_stage(0, [config.space.full_mask() for _ in range(config.stages[0].depth)])

    # ----- stage set-up (dasvit.search_stage) ---------------------------------------------------------------------
    def _build_stage(self, stage: int, masks: list[torch.Tensor]) -> None:
        self.stage, self.epochs_done = stage, 0
        built = build_stage(self.config, stage, masks, self.input_spec, self.steps_per_epoch, self.execution)
        self.model, self.step_model, self.architect = built.model, built.step_model, built.architect
        self.w_optimizer, self.w_scheduler = built.w_optimizer, built.w_scheduler

    # ----- one epoch ----------------------------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_set) // self.shard[1] // self.rank_batch

    def _loaders(self) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
        seed = derived_seed(self.config.seed, self.stage, self.epochs_done)
        seed_everything(seed)
        batch = self.rank_batch
        return (
            make_loader(self.train_set, batch, shuffle=True, seed=seed, drop_last=True, shard=self.shard),
            make_loader(self.val_set, batch, shuffle=True, seed=seed + 1, drop_last=True, shard=self.shard),
        )

    def step(self, train_batch: Batch, val_batch: Batch) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One bilevel step: alpha on the search-val batch, then the weights on the train batch.

        Returns the weight step's loss and logits (detached) and the fairness penalty.
        """
        penalty = self.architect.step(train_batch, val_batch, xi=self.w_scheduler.get_last_lr()[0]).fairness
        logits = self.step_model(train_batch[0], alpha_grad=False)  # the weights' step: alpha is the architect's alone
        loss = F.cross_entropy(logits, train_batch[1])
        self.w_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        weights = self.model.weight_parameters()
        average_gradients_([p.grad for p in weights])
        torch.nn.utils.clip_grad_norm_(weights, self.config.grad_clip)
        self.w_optimizer.step()
        self.w_scheduler.step()
        return loss.detach(), logits.detach(), penalty

    def train_epoch(self, progress: bool = False) -> EpochRecord:
        start = time.perf_counter()
        self.model.train()
        train_loader, val_loader = self._loaders()
        totals = np.zeros(3)  # loss sum, correct, count
        penalty = 0.0
        lr = self.w_scheduler.get_last_lr()[0]  # at the epoch's start
        steps = tqdm(zip(train_loader, val_loader), total=len(train_loader), leave=False,
                     disable=not (progress and sys.stderr.isatty()),
                     desc=f"stage {self.stage} epoch {self.epochs_done}")
        for (x_train, y_train), (x_val, y_val) in steps:
            train_batch = (x_train.to(self.device), y_train.to(self.device))
            loss, logits, penalty = self.step(train_batch, (x_val.to(self.device), y_val.to(self.device)))
            totals += (float(loss) * len(y_train), int((logits.argmax(1) == train_batch[1]).sum()), len(y_train))
        weights = [w.detach().cpu() for w in self.model.op_weights()]
        record = EpochRecord(
            stage=self.stage, depth=len(self.model.blocks), epoch=self.epochs_done, global_epoch=len(self.history),
            lr=lr, fairness_penalty=penalty, **train_figures(totals, self.device),
            **val_figures(self.model, self.val_set, self.device, self.shard),
            **alpha_stats(weights, self.skip_columns), seconds=time.perf_counter() - start,
        )
        self.epochs_done += 1
        self.history.append(record)
        self.alpha_history.append(
            {"stage": self.stage, "epoch": record.epoch, "global_epoch": record.global_epoch,
             "weights": [w.tolist() for w in weights]}
        )
        return record

    # ----- driving the stages ---------------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.stage == len(self.config.stages) - 1 and self.epochs_done == self.config.stages[-1].epochs

    def advance(self, progress: bool = False) -> EpochRecord:
        """Train the next epoch, moving to the next stage first when the current one is complete."""
        if self.finished:
            raise RuntimeError("the search is already finished")
        if self.epochs_done == self.config.stages[self.stage].epochs:
            self._close_stage()
            self._build_stage(self.stage + 1, next_stage_masks(self.config, self.stage, self.model, self.none_columns))
        return self.train_epoch(progress)

    def _close_stage(self) -> None:
        if len(self.stage_summaries) > self.stage:  # already closed (a finished run that was resumed)
            return
        self.stage_summaries.append(stage_summary(self.stage, self.model))

    def closes_stage(self, record: EpochRecord) -> bool:
        """Whether ``record`` is the last epoch of its stage: where stage plots are drawn and trials are scored."""
        return record.epoch + 1 == self.config.stages[record.stage].epochs

    def genotype(self) -> Genotype:
        meta = {"dataset": self.config.data.dataset, "keep_ratio": self.config.keep_ratio,
                "fairness_lambda": self.config.fairness_lambda, "seed": self.config.seed,
                "second_order": self.config.second_order}
        return self.model.genotype(meta)

    def run(self, out_dir: str | Path | None = None, progress: bool = False,
            on_epoch_end: EpochCallback | None = None) -> Genotype:
        """Run to the end (from wherever a resumed run stands); write outputs to ``out_dir`` after every epoch."""
        total = sum(s.epochs for s in self.config.stages)
        with EpochProgress(total, "search", progress, initial=len(self.history)) as bar:
            while not self.finished:
                record = self.advance(progress)
                bar.update(stage=record.stage, val_acc=f"{record.val_acc:.3f}", skip=f"{record.skip_share:.2f}")
                if out_dir is not None and self.shard[0] == 0:
                    write_outputs(self.state_dict(), Path(out_dir))
                if on_epoch_end is not None:
                    on_epoch_end(self, record)
        self._close_stage()
        genotype = self.genotype()
        if out_dir is not None and self.shard[0] == 0:
            write_outputs(self.state_dict(), Path(out_dir))
            genotype.save(Path(out_dir) / GENOTYPE)
        return genotype

    # ----- state (dasvit.checkpoint writes and resumes it) ---------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "stage": self.stage,
            "epochs_done": self.epochs_done,
            "masks": [m.cpu() for m in self.model.masks],
            "model": self.model.state_dict(),
            "w_optimizer": self.w_optimizer.state_dict(),
            "w_scheduler": self.w_scheduler.state_dict(),
            "alpha_optimizer": self.architect.optimizer.state_dict(),
            "history": [asdict(r) for r in self.history],
            "alpha_history": self.alpha_history,
            "stage_summaries": self.stage_summaries,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != self.config.to_dict():
            changed = sorted(k for k, v in self.config.to_dict().items() if state["config"].get(k) != v)
            raise ConfigError(f"the checkpoint was written with a different config (differs in: {', '.join(changed)})")
        self._build_stage(state["stage"], state["masks"])
        self.epochs_done = state["epochs_done"]
        self.model.load_state_dict(state["model"])
        self.w_optimizer.load_state_dict(state["w_optimizer"])
        self.w_scheduler.load_state_dict(state["w_scheduler"])
        self.architect.optimizer.load_state_dict(state["alpha_optimizer"])
        self.history = [EpochRecord(**r) for r in state["history"]]
        self.alpha_history = state["alpha_history"]
        self.stage_summaries = state["stage_summaries"]
