"""The settings of a sweep's search trials, as they cross into Ray: ``TrialSetup`` (what every trial of one sweep
shares, built by the sweep) and ``WorkerConfig`` (what each Ray Train worker of one trial is handed, built by the
trial's driver, ``dasvit.platform.trial``, and read by the workers' loop, ``dasvit.platform.trial_worker``). Their
own module, free of Ray, so that neither side imports the other."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from dasvit.config import SearchConfig


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of one sweep shares; it is saved with the sweep so that ``--resume`` rebuilds it."""

    search: SearchConfig  # the base config; each trial overrides the values Optuna proposes
    workers_per_trial: int
    cpus_per_worker: float
    gpus_per_worker: float
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    storage_path: str
    max_failures: int
    precision: str = "fp32"
    fused: bool = False
    objective: str = "params"
    proxy_epochs: int = 4
    max_macs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "search": self.search.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSetup:
        return cls(**{**data, "search": SearchConfig.from_dict(data["search"]).validate()})


@dataclass(frozen=True)
class WorkerConfig:
    """What each Ray Train worker of one trial needs: the sweep's shared settings and this trial's own."""

    setup: TrialSetup
    search: SearchConfig  # the sweep's base search with the values Optuna proposed for this trial
    trial_id: str
    trial_name: str
    trial_started_at: float = 0.0  # when the Tune trainable began: the worker group's start-up is measured from it
