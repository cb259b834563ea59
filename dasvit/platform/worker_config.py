"""What each Ray Train worker of a search trial is handed: built by the trial's driver (``dasvit.platform.trial``),
read by the workers' loop (``dasvit.platform.trial_worker``); its own module so that neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass

from dasvit.config import SearchConfig


@dataclass(frozen=True)
class WorkerConfig:
    """What each Ray Train worker of one trial needs."""

    search: SearchConfig
    workers: int
    cpus_per_worker: float
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    trial_id: str
    trial_name: str
    precision: str = "fp32"
    fused: bool = False
    objective: str = "params"
    proxy_epochs: int = 4
    max_macs: int | None = None
    trial_started_at: float = 0.0  # when the Tune trainable began: the worker group's start-up is measured from it
