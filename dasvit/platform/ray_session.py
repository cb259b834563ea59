"""Joining or starting Ray, shared by the sweep and the stand-alone retraining entry point."""

from __future__ import annotations

import os

import ray

RAY_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",  # measured: 53 s -> 33 s for a small sweep
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",  # no duplicated worker prints
}


def connect_ray(address: str | None) -> str:
    """Join the cluster at ``address`` (or a running one); else start a local one. Returns the dashboard URL."""
    runtime_env = {"env_vars": RAY_ENV}
    os.environ.update({k: os.environ.get(k, v) for k, v in RAY_ENV.items()})
    if ray.is_initialized():  # called from a notebook or a test that already holds a Ray session
        context = ray.get_runtime_context()
        return f"http://{context.dashboard_url}" if getattr(context, "dashboard_url", None) else "(see ray status)"
    if address in (None, "local"):
        try:
            if address == "local":  # always a fresh local cluster, never a running one
                raise ConnectionError
            context = ray.init(address="auto", runtime_env=runtime_env, log_to_driver=False)
        except ConnectionError:
            # Keep the dashboard on: without it, CPUs of killed trials stayed held and later trials hung.
            context = ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1",
                               runtime_env=runtime_env, log_to_driver=False)
    else:
        context = ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    return f"http://{context.dashboard_url}" if context.dashboard_url else "(dashboard not running)"
