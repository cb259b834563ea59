"""The sweep configuration: a YAML file (the packaged default, or the user's) plus command-line overrides.

It ships inside the package because ``ray submit`` uploads only the entry script to the head node.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dasvit.config import ConfigError, DataConfig, SearchConfig
from dasvit.vocabulary import validate_max_macs, validate_objective, validate_precision

INTEGER_TUNABLE = {"embed_dim", "batch_size", "depth"}  # depth: the final stage's, i.e. the returned network's blocks
TUNABLE = {"fairness_lambda", "keep_ratio", "alpha_lr", "w_lr"} | INTEGER_TUNABLE
COSTS = ("params", "macs")  # what a multi-objective sweep minimises beside its objective


def _known_keys(cls: type, data: dict[str, Any], what: str) -> None:
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {what} key(s): {', '.join(map(repr, unknown))}")


def trial_search_config(base: SearchConfig, tuned: dict[str, Any]) -> SearchConfig:
    """The search config of one trial: the base config with the values Optuna proposed. ``depth`` is the final
    stage's depth (the earlier stages keep theirs: the progressive search stretches its masks to any depth)."""
    tuned = dict(tuned)
    depth = tuned.pop("depth", None)
    if depth is not None:
        *earlier, last = base.stages
        base = replace(base, stages=(*earlier, replace(last, depth=int(depth))))
    return base.with_overrides(**tuned).validate()


def tune_values(name: str, bounds: dict[str, Any]) -> list[Any]:
    """The values of one tune range that must each make a valid search config: every value of an integer range
    (an embed_dim must divide by every attention op's heads), both ends of a continuous one."""
    if name not in TUNABLE:
        raise ConfigError(f"tune: {name!r} is not tunable; choose from {', '.join(sorted(TUNABLE))}")
    keys, wanted = ({"low", "high", "step"}, "{low, high} and an optional step") if name in INTEGER_TUNABLE else (
        {"low", "high"}, "{low, high}")
    if not isinstance(bounds, dict) or not {"low", "high"} <= set(bounds) <= keys:
        raise ConfigError(f"tune: {name!r} needs {wanted}, got {bounds!r}")
    low, high = bounds["low"], bounds["high"]
    if name not in INTEGER_TUNABLE:
        if not low <= high:
            raise ConfigError(f"tune: {name!r} needs low <= high, got {bounds!r}")
        return [low, high]
    step = bounds.get("step", 1)
    for key, value in (("low", low), ("high", high), ("step", step)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"tune: {name!r} {key} must be an integer >= 1, got {value!r}")
    if not low <= high or (high - low) % step:
        raise ConfigError(f"tune: {name!r} needs low <= high with high - low a multiple of step, got {bounds!r}")
    return list(range(low, high + 1, step))


@dataclass(frozen=True)
class AshaConfig:
    grace_period: int = 3
    reduction_factor: int = 2


@dataclass(frozen=True)
class RetrainJobConfig:
    top_k: int = 2
    epochs: int = 50
    cpus: float = 1
    gpus: float = 0


@dataclass(frozen=True)
class SweepConfig:
    experiment: str = "dasvit-sweep"
    num_trials: int = 4
    startup_trials: int = 10  # Optuna's random proposals before TPE models the space (TPESampler.n_startup_trials)
    max_concurrent_trials: int = 1
    workers_per_trial: int = 2
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0
    precision: str = "fp32"  # bf16: autocast in search and retraining (GPU sweeps)
    fused: bool = False  # the fused mixed op (dasvit.fused): pays where the step is launch-bound (GPUs)
    seed: int = 0
    objective: str = "params"  # what Optuna, ASHA and the choice of genotypes to retrain maximise (dasvit.objective)
    proxy_epochs: int = 4  # epochs of the proxy retraining, at the end of every search stage
    max_macs: int | None = None  # MACs per image the returned network may cost; more is scored below any within
    cost: str | None = None  # params or macs: Optuna minimises it beside the objective (a Pareto front)
    tune: dict[str, dict[str, float]] = field(default_factory=dict)
    asha: AshaConfig = field(default_factory=AshaConfig)
    max_failures: int = 1
    search: dict[str, Any] = field(default_factory=dict)
    retrain: RetrainJobConfig = field(default_factory=RetrainJobConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a sweep config must be a mapping, got {type(data).__name__}")
        _known_keys(cls, data, "sweep config")
        data = dict(data)
        for key, sub in (("asha", AshaConfig), ("retrain", RetrainJobConfig)):
            if key in data:
                if not isinstance(data[key], dict):
                    raise ConfigError(f"sweep config {key!r} must be a mapping, got {data[key]!r}")
                _known_keys(sub, data[key], f"{key} config")
                data[key] = sub(**data[key])
        return cls(**data).validate()

    @classmethod
    def load(cls, path: str | Path | None = None) -> SweepConfig:
        """The packaged default, or the YAML file at ``path``, which overrides the default key by key."""
        base = yaml.safe_load(resources.files("dasvit.platform.configs").joinpath("default.yaml").read_text())
        if path is None:
            return cls.from_dict(base)
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"sweep config file {str(path)!r} does not exist")
        try:
            user = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"sweep config file {str(path)!r} is not valid YAML: {err}") from None
        if not isinstance(user, dict):
            raise ConfigError(f"sweep config file {str(path)!r} must hold a mapping")
        return cls.from_dict({**base, **user})

    def base_search(self) -> SearchConfig:
        return SearchConfig.from_dict({**self.search, "seed": self.seed})

    def trial_search_config(self, tuned: dict[str, Any]) -> SearchConfig:
        return trial_search_config(self.base_search(), tuned)

    def validate(self) -> SweepConfig:
        for name in ("num_trials", "startup_trials", "max_concurrent_trials", "workers_per_trial", "max_failures"):
            value, low = getattr(self, name), 0 if name == "max_failures" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.cost is not None and self.cost not in COSTS:
            raise ConfigError(f"cost {self.cost!r} must be one of {', '.join(COSTS)} or null")
        try:
            validate_precision(self.precision)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if not isinstance(self.fused, bool):
            raise ConfigError(f"fused must be true or false, got {self.fused!r}")
        try:
            validate_objective(self.objective)
            validate_max_macs(self.max_macs)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if self.objective == "params" and self.cost == "params":
            raise ConfigError("objective params with cost params asks for more and fewer parameters at once: "
                              "use cost: macs, or another objective")
        if not isinstance(self.proxy_epochs, int) or isinstance(self.proxy_epochs, bool) or self.proxy_epochs < 1:
            raise ConfigError(f"proxy_epochs must be an integer >= 1, got {self.proxy_epochs!r}")
        for name, bounds in self.tune.items():
            for value in tune_values(name, bounds):  # e.g. keep_ratio in (0, 1], lambda >= 0, embed_dim % heads
                try:
                    self.trial_search_config({name: value})
                except ConfigError as err:
                    raise ConfigError(f"tune: {name} = {value!r} of {bounds!r}: {err}") from None
        self.base_search().validate()
        if self.asha.grace_period < 1 or self.asha.reduction_factor < 2:
            raise ConfigError(f"asha: grace_period >= 1 and reduction_factor >= 2, got {asdict(self.asha)}")
        stage_ends = self.stage_ends
        off_stage = [rung for rung in self.asha_rungs if rung not in stage_ends]
        if off_stage:
            raise ConfigError(f"asha: rung(s) at epoch {off_stage} of {asdict(self.asha)} fall inside a search stage "
                              f"(stages end at epochs {stage_ends}): ASHA would compare the genotypes of different "
                              "stages; choose a grace_period and reduction_factor whose rungs are stage ends")
        if self.retrain.top_k < 0 or self.retrain.epochs < 1:
            raise ConfigError(f"retrain: top_k >= 0 and epochs >= 1, got {asdict(self.retrain)}")
        return self

    @property
    def data(self) -> DataConfig:
        return self.base_search().data

    @property
    def stage_ends(self) -> list[int]:
        ends, epoch = [], 0
        for stage in self.base_search().stages:
            epoch += stage.epochs
            ends.append(epoch)
        return ends

    @property
    def asha_rungs(self) -> list[int]:
        """The epochs at which ASHA compares trials, placed as Ray's one-bracket ``ASHAScheduler`` places them:
        grace_period x reduction_factor^k for k < log(max_t / grace_period) / log(reduction_factor) + 1."""
        grace, factor = self.asha.grace_period, self.asha.reduction_factor
        count = int(math.log(self.total_epochs / grace) / math.log(factor) + 1) if grace <= self.total_epochs else 0
        return [grace * factor**k for k in range(count)]

    @property
    def total_epochs(self) -> int:
        return sum(stage.epochs for stage in self.base_search().stages)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
