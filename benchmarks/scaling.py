"""Data-parallel scaling: search-step throughput (images/s) with 1, 2, ... Ray Train workers.

Every worker runs the default search config's bilevel step (``SearchRun.step``) on its own shard with a per-worker
batch of 32, so 2 workers process twice the images per step; weight and alpha gradients are all-reduced (gloo).
Each worker gets 1 CPU and 1 torch thread. For reference, one in-process search with 1 and with 2 threads.

    python benchmarks/scaling.py [--steps 30] [--workers 1,2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd
import ray
import ray.train
import torch
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from dasvit.arglists import NumberList
from dasvit.config import DataConfig, SearchConfig
from dasvit.data import load_data, make_loader
from dasvit.distributed import rank, world_size
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.search import SearchRun

RESULTS = Path(__file__).parent / "results"


def timed_steps(steps: int, warmup: int, dataset: str) -> float:
    """Seconds for ``steps`` search steps of the default config on this rank's shard (after ``warmup``)."""
    run = SearchRun(SearchConfig(data=DataConfig(dataset)), load_data(DataConfig(dataset)))
    loaders = [make_loader(s, run.config.batch_size, shuffle=True, drop_last=True, shard=(rank(), world_size()))
               for s in (run.train_set, run.val_set)]
    batches = list(itertools.islice(zip(*loaders), steps + warmup))  # only the batches it times
    for train, val in batches[:warmup]:
        run.step(train, val)
    if world_size() > 1:
        torch.distributed.barrier()
    start = time.perf_counter()
    for train, val in batches[warmup:]:
        run.step(train, val)
    if world_size() > 1:
        torch.distributed.barrier()
    return time.perf_counter() - start


def ray_worker(config: dict) -> None:
    torch.set_num_threads(1)
    seconds = timed_steps(config["steps"], config["warmup"], config["dataset"])
    if ray.train.get_context().get_world_rank() == 0:
        Path(config["result"]).write_text(json.dumps({"seconds": seconds}))


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--workers", type=NumberList(int, minimum=1), default="1,2",
                        help="comma-separated Ray Train worker counts, 1 CPU each; 1 among them (the speed-up's base)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cpus = os.cpu_count() or 1
    counts = sorted(set(args.workers))
    if counts[0] != 1 or counts[-1] > cpus:
        parser.error(f"--workers {','.join(map(str, args.workers))}: must include 1 and stay within the {cpus} CPUs "
                     "of this machine")
    batch = SearchConfig().batch_size
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        seconds = timed_steps(args.steps, args.warmup, args.dataset)
        rows.append({"setup": f"in-process, {threads} thread(s)", "workers": 1, "seconds": seconds,
                     "images_per_s": args.steps * batch / seconds})
    ray.init(address="local", num_cpus=counts[-1], include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as folder:
        for workers in counts:
            result = Path(folder) / f"w{workers}.json"
            TorchTrainer(
                ray_worker, train_loop_config={"steps": args.steps, "warmup": args.warmup, "dataset": args.dataset,
                                               "result": str(result)},
                scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
                run_config=RunConfig(name=f"scaling-{workers}", storage_path=folder),
            ).fit()
            seconds = json.loads(result.read_text())["seconds"]
            rows.append({"setup": f"Ray Train, {workers} worker(s) x 1 CPU", "workers": workers, "seconds": seconds,
                         "images_per_s": workers * args.steps * batch / seconds})
    ray.shutdown()
    table = pd.DataFrame(rows)
    one_worker = table[table["setup"].str.startswith("Ray Train, 1")]["images_per_s"].iloc[0]
    table["speedup_vs_1_worker"] = table["images_per_s"] / one_worker
    meta = {"device": f"{platform.machine()} CPU", "steps": args.steps, "batch_per_worker": batch,
            "config": f"default search on {args.dataset}, stage 0 (depth 2, all ops), r = 0.5"}
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "scaling.csv", index=False)
    (args.out / "scaling.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
