"""Retraining the best searched genotypes from scratch, in parallel, as Ray tasks (one GPU each on a cluster).

Each retraining is its own MLflow run, tagged with the search run it came from (``search_run_id``), so the
closing table can put search-val accuracy next to retrained test accuracy.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import ray
import torch

from dasvit.config import DataConfig, RetrainConfig
from dasvit.data import load_data
from dasvit.genotype import genotype_from_dict
from dasvit.retrain import retrain
from dasvit_platform import tracking


def top_search_runs(tracking_uri: str, experiment_id: str, k: int, parent_run_id: str | None = None) -> pd.DataFrame:
    """The ``k`` search runs with the best final ``val_acc`` that logged a genotype (FINISHED or early-stopped)."""
    client = tracking.client_for(tracking_uri)
    query = f"tags.`{tracking.KIND_TAG}` = 'search' and status != 'FAILED'"
    if parent_run_id:
        query += f" and tags.`{tracking.PARENT_TAG}` = '{parent_run_id}'"
    runs = client.search_runs([experiment_id], filter_string=query, order_by=["metrics.val_acc DESC"], max_results=k)
    rows = [{"search_run_id": r.info.run_id, "trial_id": r.data.tags.get("trial_id", ""),
             "search_val_acc": r.data.metrics.get("val_acc"), "dataset": r.data.tags.get("dataset", "")}
            for r in runs if "val_acc" in r.data.metrics]
    return pd.DataFrame(rows, columns=["search_run_id", "trial_id", "search_val_acc", "dataset"])


@ray.remote
def retrain_task(job: dict[str, Any]) -> dict[str, Any]:
    """Retrain one genotype; log it as an MLflow run linked to its search run."""
    torch.set_num_threads(max(1, int(job["cpus"])))
    client = tracking.client_for(job["tracking_uri"])
    genotype = genotype_from_dict(tracking.load_genotype_artifact(client, job["search_run_id"]))
    config = RetrainConfig(data=DataConfig(**job["data"]), epochs=job["epochs"], seed=job["seed"]).validate(genotype.patch_size)
    run_id = tracking.start_run(
        client, job["experiment_id"], f"retrain-{job['trial_id'] or job['search_run_id'][:8]}", "retrain",
        tags={"search_run_id": job["search_run_id"], "trial_id": job["trial_id"], "dataset": config.data.dataset},
        parent_run_id=job.get("parent_run_id"),
    )
    try:
        tracking.log_params(client, run_id, tracking.flatten("", {"retrain": vars(config) | {"data": vars(config.data)}}))
        client.log_text(run_id, genotype.to_json(), "genotype.json")
        data = load_data(config.data.dataset, config.data.data_root, config.data.resolved_image_size, config.data.download)
        result = retrain(genotype, config, data, device="cuda" if job["gpus"] > 0 else "cpu",
                         on_epoch_end=lambda row: tracking.log_metrics(client, run_id, row, step=row["epoch"]))
        tracking.log_metrics(client, run_id, {"test_acc": result.test_acc, "params": result.params,
                                              "macs": result.macs, "retrain_seconds": result.seconds}, step=config.epochs)
    except BaseException as err:
        tracking.end_run(client, run_id, "FAILED", error=repr(err))
        raise
    tracking.end_run(client, run_id, "FINISHED")
    return {"search_run_id": job["search_run_id"], "retrain_run_id": run_id, "test_acc": result.test_acc,
            "retrain_params": result.params, "retrain_macs": result.macs}


def retrain_top(
    candidates: pd.DataFrame, *, tracking_uri: str, experiment_id: str, data: DataConfig, epochs: int, seed: int,
    cpus: float, gpus: float, parent_run_id: str | None = None,
) -> pd.DataFrame:
    """Retrain every candidate in parallel; return the candidates with the retraining results joined on."""
    jobs = [
        {"search_run_id": row.search_run_id, "trial_id": row.trial_id, "tracking_uri": tracking_uri,
         "experiment_id": experiment_id, "parent_run_id": parent_run_id, "data": vars(data), "epochs": epochs,
         "seed": seed, "cpus": cpus, "gpus": gpus}
        for row in candidates.itertuples()
    ]
    futures = [retrain_task.options(num_cpus=cpus, num_gpus=gpus).remote(job) for job in jobs]
    results = pd.DataFrame(ray.get(futures), columns=["search_run_id", "retrain_run_id", "test_acc", "retrain_params",
                                                      "retrain_macs"])
    return candidates.merge(results, on="search_run_id", how="left")
