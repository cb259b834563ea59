"""The GPU sweep config validates and schedules, tested on a CPU machine against a local Ray that declares a fake
GPU: the trial's worker group asks for one GPU per worker, and the retrainings share the one GPU at once."""

import time
from dataclasses import replace
from pathlib import Path

import pytest
import ray
import yaml

from dasvit.platform.config import SweepConfig
from dasvit.platform.retrain_jobs import task_resources
from dasvit.platform.trial import TrialSetup, scaling_config

GPU_YAML = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "gpu.yaml"


def _setup(config: SweepConfig) -> TrialSetup:
    return TrialSetup(config.base_search(), config.workers_per_trial, config.cpus_per_worker, config.gpus_per_worker,
                      "sqlite:////tmp/unused.db", "0", "parent", "/tmp/unused", config.max_failures, config.precision,
                      config.fused)


def test_gpu_config_validates_with_bf16_fused_and_fractional_retraining():
    config = SweepConfig.load(GPU_YAML)
    assert (config.gpus_per_worker, config.precision, config.fused) == (1, "bf16", True)
    assert 0 < config.retrain.gpus < 1 and config.retrain.top_k * config.retrain.gpus <= 1
    workers = scaling_config(_setup(config))
    assert workers.use_gpu and workers.num_workers == 1
    assert workers.resources_per_worker == {"CPU": config.cpus_per_worker, "GPU": 1}
    cpu = scaling_config(_setup(replace(config, gpus_per_worker=0)))
    assert not cpu.use_gpu and "GPU" not in cpu.resources_per_worker


@ray.remote
def _hold_gpu(seconds: float) -> tuple[list, float, float]:
    start = time.monotonic()
    time.sleep(seconds)
    return ray.get_gpu_ids(), start, time.monotonic()


@pytest.mark.slow
def test_retrainings_share_one_fake_gpu_concurrently():
    config = SweepConfig.load(GPU_YAML)
    k = config.retrain.top_k
    # CPUs for one task more than the GPU fractions allow, so that only the GPU can make a task wait
    ray.init(address="local", num_cpus=(k + 1) * config.retrain.cpus, num_gpus=1, include_dashboard=False,
             log_to_driver=False)
    try:
        resources = task_resources(config.retrain.cpus, config.retrain.gpus)
        held = sorted(ray.get([_hold_gpu.options(**resources).remote(3.0) for _ in range(k + 1)]), key=lambda h: h[1])
    finally:
        ray.shutdown()
    assert all(ids == [0] for ids, _, _ in held)  # every task sees the one GPU
    first, last = held[:k], held[k]
    assert max(s for _, s, _ in first) < min(e for _, _, e in first)  # the top-k ran at the same time
    assert last[1] >= min(e for _, _, e in first) - 0.1  # the one more waited for a share of the GPU


# vCPUs and GPUs of the instance types cluster/config.yaml may name (AWS's published sizes).
INSTANCE_SIZES = {"g5.xlarge": (4, 1), "g5.2xlarge": (8, 1), "g5.12xlarge": (48, 4), "p4d.24xlarge": (96, 8)}


def test_cluster_sweep_fits_the_cluster_yaml():
    """The cluster sweep asks for what cluster/config.yaml's GPU workers have, with the ratios that ran on the GPU
    machine (experiments/configs/gpu.yaml: 4 CPUs per GPU per Train worker, fractional GPUs for retraining)."""
    repo = GPU_YAML.parents[2]
    cluster = yaml.safe_load((repo / "cluster" / "config.yaml").read_text())
    node = cluster["available_node_types"]["gpu_worker"]
    cpus, gpus = INSTANCE_SIZES[node["node_config"]["InstanceType"]]
    sweep, measured = SweepConfig.load(repo / "experiments" / "configs" / "cluster.yaml"), SweepConfig.load(GPU_YAML)
    assert sweep.gpus_per_worker == measured.gpus_per_worker == 1
    assert sweep.cpus_per_worker == measured.cpus_per_worker <= cpus // gpus
    trial_gpus = sweep.workers_per_trial * sweep.gpus_per_worker
    assert sweep.max_concurrent_trials * trial_gpus <= node["max_workers"] * gpus  # every concurrent trial can start
    assert sweep.retrain.gpus <= 1 and sweep.retrain.cpus / sweep.retrain.gpus <= cpus / gpus
