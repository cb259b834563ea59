"""Run configurations: plain dataclasses, built from dicts (YAML/JSON/CLI) that may not carry unknown keys, and
validated before anything is written, so bad input fails with a message naming the bad value. Torch-free (see
``dasvit.vocabulary``), so that validating a config never waits for torch to load."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from dasvit.vocabulary import (
    DEFAULT_OPS,
    DEFAULT_STAGES,
    HEADS,
    SearchSpace,
    StageSpec,
    dataset_names,
    dataset_spec,
    parse_op,
    validate_keep_ratio,
    validate_lambda,
    validate_stages,
)


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


def _check_positive(name: str, value: Any, kind: type = int) -> None:
    ok = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool) and value > 0
    if not ok:
        raise ConfigError(f"{name} must be a positive {kind.__name__}, got {value!r}")


def _from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} key(s): {', '.join(map(repr, unknown))}; known keys: {', '.join(sorted(known))}")
    return cls(**data)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist5k"
    data_root: str | None = None
    download: bool = False
    image_size: int | None = None  # None: the data set's default
    train_images: int | None = None  # how many non-test images searches and retrainings use; None: the data set's
    # default (Fashion-MNIST: its protocol's study size, 10,000 of 50,000; the others: all)

    def validate(self, patch_size: int) -> None:
        if self.dataset not in dataset_names():
            raise ConfigError(f"unknown data set {self.dataset!r}: choose from {', '.join(dataset_names())}")
        if self.train_images is not None:
            _check_positive("train_images", self.train_images)
            most = dataset_spec(self.dataset).max_train_images
            if most is not None and self.train_images > most:
                raise ConfigError(f"train_images {self.train_images} is more than the {most:,} training images "
                                  f"{self.dataset} has outside its selection split")
        _check_positive("image size", self.resolved_image_size)
        _check_positive("patch size", patch_size)
        if self.resolved_image_size % patch_size != 0:
            raise ConfigError(f"image size {self.resolved_image_size} is not divisible by patch size {patch_size}")

    @property
    def resolved_image_size(self) -> int:
        return self.image_size or dataset_spec(self.dataset).image_size


@dataclass(frozen=True)
class SearchConfig:
    data: DataConfig = field(default_factory=DataConfig)
    patch_size: int | None = None  # None: the data set's default
    embed_dim: int = 64
    ops: tuple[str, ...] = DEFAULT_OPS
    nodes: int = 2
    edges_per_node: int = 1
    head: str = "avg"  # the mean-pooled head: every op reaches the loss and no genotype is blind (README)
    stages: tuple[StageSpec, ...] = DEFAULT_STAGES
    keep_ratio: float = 0.5
    fairness_lambda: float = 0.5
    second_order: bool = False
    batch_size: int = 32
    w_lr: float = 1e-3
    w_weight_decay: float = 0.05
    grad_clip: float = 5.0
    alpha_lr: float = 6e-3  # DARTS uses 3e-4 over ~20k steps; the default search has ~560 (~36x fewer)
    alpha_weight_decay: float = 1e-3
    seed: int = 0

    @property
    def resolved_patch_size(self) -> int:
        return self.patch_size or dataset_spec(self.data.dataset).patch_size

    @property
    def space(self) -> SearchSpace:
        return SearchSpace(tuple(self.ops), self.nodes, self.edges_per_node)

    def validate(self) -> SearchConfig:
        try:
            validate_keep_ratio(self.keep_ratio)
            validate_lambda(self.fairness_lambda)
            if self.head not in HEADS:
                raise ConfigError(f"head {self.head!r} is not one of {', '.join(HEADS)}")
            self.data.validate(self.resolved_patch_size)
            _check_positive("embed dim", self.embed_dim)
            self.space.validate(self.embed_dim)
            candidates = sum(parse_op(name).properties.discrete for name in self.ops)
            validate_stages(self.stages, candidates)
            _check_positive("batch size", self.batch_size)
            for name in ("w_lr", "alpha_lr", "grad_clip"):
                _check_positive(name, getattr(self, name), float)
            if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
                raise ConfigError(f"seed must be a non-negative integer, got {self.seed!r}")
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ops"] = list(self.ops)
        data["stages"] = [asdict(s) for s in self.stages]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        data = dict(data)
        if "data" in data:
            data["data"] = _from_dict(DataConfig, dict(data["data"]), "data config")
        if "ops" in data:
            data["ops"] = tuple(data["ops"])
        if "stages" in data:
            data["stages"] = tuple(_from_dict(StageSpec, dict(s), "stage") for s in data["stages"])
        return _from_dict(cls, data, "search config")

    def with_overrides(self, **changes: Any) -> SearchConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class RetrainConfig:
    """A standard ViT recipe: AdamW, linear warmup then cosine decay, label smoothing, augmentation.

    50 epochs: small ViTs need long schedules (a hand ViT goes from 43 % at 15 epochs to 91.5 % at 50 on mnist5k),
    and every network, searched or baseline, is compared at plateau (``RetrainResult.late_gain``). ``threads`` fixes
    torch's CPU threads for the retraining: the same genotype, seed and recipe then give the same accuracy in a
    sweep's retraining task, ``dasvit retrain`` and the experiment scripts (on CPUs of one instruction set)."""

    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 50
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 1  # torch's CPU threads: their count changes the rounding, so it is part of the recipe

    def validate(self, patch_size: int) -> RetrainConfig:
        self.data.validate(patch_size)
        for name in ("epochs", "batch_size", "threads"):
            _check_positive(name.replace("_", " "), getattr(self, name))
        for name in ("lr", "grad_clip"):
            _check_positive(name, getattr(self, name), float)
        if not isinstance(self.warmup_epochs, int) or not 0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"warmup epochs {self.warmup_epochs!r} must be between 0 and epochs ({self.epochs})")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label smoothing {self.label_smoothing!r} must be in [0, 1)")
        return self
