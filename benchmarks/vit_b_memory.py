"""The paper's memory claim at ViT-B scale: one search step (alpha step + weight step) of the first stage's supernet
(default candidate ops on every edge) at 224 px, patch 16, D 768, on synthetic images (cost only).

Reported: peak memory of the step at each keep ratio r and batch 64, its time, and the largest batch that fits in
the device's memory at r = 1 (plain DARTS applied to a ViT) and at r = 0.25 (found by doubling, then bisection,
on out-of-memory errors). ``--smoke`` runs the same code at a tiny size on CPU, for CI.

    python benchmarks/vit_b_memory.py --device cuda --dtype bf16
    python benchmarks/vit_b_memory.py --smoke
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import torch
from synthetic import synthetic_data
from token_selection import device_name, sync

from dasvit.arglists import KEEP_RATIOS
from dasvit.config import DataConfig, SearchConfig
from dasvit.data import make_loader
from dasvit.metrics import peak_memory_during
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.search import SearchRun

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).parent / "results"


def one_step(config: SearchConfig, batch: int, device: torch.device, precision: str, fused: bool,
             repeats: int) -> dict[str, float]:
    """Peak memory (MB) and median time (ms) of one search step at this batch size."""
    data = synthetic_data(2 * batch, 3, config.data.resolved_image_size, 1000)
    run = SearchRun(config.with_overrides(batch_size=batch), data, device=device, fused=fused, precision=precision)
    batches = [(x.to(device), y.to(device)) for x, y in (next(iter(make_loader(s, batch, shuffle=False)))
                                                          for s in (run.train_set, run.val_set))]
    run.step(*batches)  # warm-up (kernels, allocator)
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        run.step(*batches)
        sync(device)
        times.append(time.perf_counter() - start)
    peak = peak_memory_during(partial(run.step, *batches), device)
    del run, batches
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"peak_mem_mb": peak / 2**20, "step_ms": 1e3 * sorted(times)[len(times) // 2]}


def fits(config: SearchConfig, batch: int, device: torch.device, precision: str, fused: bool) -> bool:
    try:
        one_step(config, batch, device, precision, fused, repeats=1)
        return True
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return False


def largest_batch(config: SearchConfig, device: torch.device, precision: str, fused: bool, start: int,
                  limit: int) -> int:
    """The largest batch (to within 8) whose step fits, searched up to ``limit``."""
    low, high = 0, start
    while high <= limit and fits(config, high, device, precision, fused):
        low, high = high, 2 * high
    high = min(high, limit + 1)
    while high - low > 8:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(config, middle, device, precision, fused) else (low, middle)
    return low


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="bf16")
    parser.add_argument("--ratios", type=KEEP_RATIOS, default="1,0.5,0.25,0.125")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-batch-limit", type=int, default=4096, help="stop the largest-batch search here")
    parser.add_argument("--eager", action="store_true", help="the op-by-op mixed op instead of the fused one")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny size on CPU (CI): 32 px, patch 8, D 32, batch 4")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.dtype, args.batch, args.max_batch_limit, args.repeats = "cpu", "fp32", 4, 16, 1
    image, patch, dim = (32, 8, 32) if args.smoke else (224, 16, 768)
    device, fused = torch.device(args.device), not args.eager
    base = SearchConfig(data=DataConfig("imagefolder", image_size=image), patch_size=patch, embed_dim=dim)
    stage0 = base.with_overrides(stages=base.stages[:1])
    rows = []
    for ratio in args.ratios:
        config = stage0.with_overrides(keep_ratio=ratio)
        row: dict[str, Any] = {"keep_ratio": ratio, "batch": args.batch}
        try:
            row.update(one_step(config, args.batch, device, args.dtype, fused, args.repeats))
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            row.update({"peak_mem_mb": float("nan"), "step_ms": float("nan"), "oom": True})
        if ratio in (1.0, 0.25):
            row["largest_batch"] = largest_batch(config, device, args.dtype, fused, args.batch, args.max_batch_limit)
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    meta = {"device": device_name(device), "torch": torch.__version__, "dtype": args.dtype, "fused": fused,
            "image_size": image, "patch_size": patch, "embed_dim": dim, "depth": stage0.stages[0].depth,
            "ops": list(base.ops), "device_memory_gb": (torch.cuda.get_device_properties(device).total_memory / 2**30
                                                        if device.type == "cuda" else None),
            "data": "synthetic images (timing and memory only)"}
    stem = "vit_b_memory_smoke" if args.smoke else f"vit_b_memory_{device.type}"
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / f"{stem}.csv", index=False)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=float))
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(table["keep_ratio"], table["peak_mem_mb"] / 1024, marker="o")
    ax.set(xlabel="keep ratio r", ylabel=f"peak step memory, GB (batch {args.batch})",
           title=f"{meta['device']}: {image} px, patch {patch}, D {dim}")
    fig.tight_layout()
    fig.savefig(args.out / f"{stem}.png", dpi=120)
    print(json.dumps(meta), "\n", table.to_string(index=False))
    return table


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
