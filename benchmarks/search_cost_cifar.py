"""Search cost at CIFAR scale, projected: seconds per epoch of each stage of the default 3-stage search on 50,000
synthetic images of CIFAR-10's shape (32x32x3, 10 classes; timing only, never an accuracy claim: no data set can be
downloaded here), timed over ``--steps`` steps per stage and scaled to a full epoch (25,000 train + 25,000
search-val images), then the device-hours of a whole search: the default schedule (3 x 3 epochs) and a DARTS-length
one (50 epochs, split over the stages like the default's). Compared with DARTS (1.5 GPU-days first order, 4 second
order) and PC-DARTS (0.1 GPU-day) on CIFAR-10.

Stages 2 and 3 search 4 and 2 ops per edge besides ``none``; which ones survive depends on the search, so the
timing keeps the costliest (attention with 4 heads, MLP ratio 4, then MLP ratio 2 and the conv): an upper bound.

    python benchmarks/search_cost_cifar.py --device cuda --dtype bf16 --fused
    python benchmarks/search_cost_cifar.py --smoke
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import pandas as pd
import torch
from synthetic import synthetic_data
from token_selection import device_name, sync

from dasvit.config import DataConfig, SearchConfig
from dasvit.data import make_loader
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.search import SearchRun
from dasvit.vocabulary import StageSpec

RESULTS = Path(__file__).parent / "results"
COSTLIEST = ("attn_h4", "mlp_r4", "mlp_r2", "conv_k3")  # kept by stages that prune to 4 and 2 ops
PRIOR_GPU_DAYS = {"DARTS (1st order)": 1.5, "DARTS (2nd order)": 4.0, "PC-DARTS": 0.1}


def stage_seconds_per_epoch(config: SearchConfig, stage: StageSpec, images: int, steps: int, device: torch.device,
                            precision: str, fused: bool) -> float:
    ops = config.ops if stage.ops is None else ("none", *COSTLIEST[: stage.ops])
    run_config = config.with_overrides(ops=ops, stages=(StageSpec(stage.depth, 1),))
    run = SearchRun(run_config, synthetic_data(images, 3, 32, 10), device=device, fused=fused, precision=precision)
    loaders = [make_loader(s, config.batch_size, shuffle=True, drop_last=True) for s in (run.train_set, run.val_set)]
    batches = [((xt.to(device), yt.to(device)), (xv.to(device), yv.to(device)))
               for (xt, yt), (xv, yv) in itertools.islice(zip(*loaders), steps + 2)]
    for train, val in batches[:2]:  # warm-up
        run.step(train, val)
    sync(device)
    start = time.perf_counter()
    for train, val in batches[2:]:
        run.step(train, val)
    sync(device)
    per_step = (time.perf_counter() - start) / (len(batches) - 2)
    return per_step * (images // 2 // config.batch_size)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--fused", action="store_true")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per stage")
    parser.add_argument("--smoke", action="store_true", help="CPU, 512 images, 3 steps per stage (CI)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    images = 512 if args.smoke else 50_000
    if args.smoke:
        args.device, args.dtype, args.steps = "cpu", "fp32", 3
    device = torch.device(args.device)
    config = SearchConfig(data=DataConfig("cifar10"), batch_size=args.batch_size)
    rows = [{"stage": k, "depth": s.depth, "ops_per_edge": s.ops or len(config.ops) - 1, "default_epochs": s.epochs,
             "seconds_per_epoch": stage_seconds_per_epoch(config, s, images, args.steps, device, args.dtype,
                                                          args.fused)}
            for k, s in enumerate(config.stages)]
    table = pd.DataFrame(rows)
    default_hours = float((table["seconds_per_epoch"] * table["default_epochs"]).sum() / 3600)
    share = table["default_epochs"] / table["default_epochs"].sum()
    darts_length_hours = float((table["seconds_per_epoch"] * 50 * share).sum() / 3600)
    summary = {"device": device_name(device), "torch": torch.__version__, "dtype": args.dtype, "fused": args.fused,
               "batch_size": args.batch_size, "images": images, "data": "synthetic 32x32x3 (timing only)",
               "default_search_hours": default_hours, "darts_length_search_hours": darts_length_hours,
               "prior_gpu_hours": {k: 24 * v for k, v in PRIOR_GPU_DAYS.items()}}
    stem = "search_cost_cifar_smoke" if args.smoke else f"search_cost_cifar_{device.type}"
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / f"{stem}.csv", index=False)
    (args.out / f"{stem}.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    print(json.dumps(summary, indent=2), "\n", table.to_string(index=False))
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
