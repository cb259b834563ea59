"""Token-selection cost: time and peak memory of one search step (alpha step + weight step) vs the keep ratio r.

Memory is the peak of the memory allocated *during* the step above what was live before it (activations saved for
backward, gradients, temporaries): on CPU from the torch profiler's allocation events, on GPU from
``torch.cuda.max_memory_allocated``. FLOPs of the step come from ``torch.utils.flop_counter`` (FLOPs = 2 x MACs);
on GPU the achieved FLOP/s is divided by the matmul peak measured in the same run. Every r runs in the same
process, so the ratios to r = 1 are comparable even where absolute times are noisy.

    python benchmarks/token_selection.py                       # default search config on CPU
    python benchmarks/token_selection.py --device cuda --dtype bf16 --image-size 224 --patch-size 16 --embed-dim 384

``--paths eager,fused`` measures both mixed-op implementations (``dasvit.fused``) in the same run, interleaved
per r, so that their ratio is taken under the same machine load. A path may add how the step is compiled
(``dasvit.compiled``): ``fused+cudagraphs``, ``eager+inductor``, ``eager+trace``. ``first_step_s`` is the first
step's wall time, compilation included: what a user waits for before the steady-state ``step_ms``. A compiled
path's FLOPs are counted on its uncompiled twin (same math).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from dasvit.arglists import KEEP_RATIOS
from dasvit.config import DataConfig, SearchConfig
from dasvit.data import load_data, make_loader
from dasvit.metrics import peak_memory_during
from dasvit.quick_exit import freeze_heap_at_exit
from dasvit.search import SearchRun
from dasvit.vocabulary import COMPILE_MODES, validate_compile

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS = Path(__file__).parent / "results"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def precision(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    if dtype == torch.float32:
        yield
    else:
        with torch.autocast(device.type, dtype=dtype):
            yield


def peak_step_memory(run: SearchRun, batches: tuple, device: torch.device, dtype: torch.dtype) -> int:
    """Bytes allocated during one step above what was live before it."""

    def step() -> None:
        with precision(device, dtype):
            run.step(*batches)

    return peak_memory_during(step, device)


def step_flops(run: SearchRun, batches: tuple, device: torch.device, dtype: torch.dtype) -> int:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, precision(device, dtype):
        run.step(*batches)
    return counter.get_total_flops()


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 8192, repeats: int = 20) -> float:
    """Achievable dense matmul FLOP/s of this device, measured on an n x n x n product."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def print_profile(run: SearchRun, batches: tuple, device: torch.device, dtype: torch.dtype, ratio: float) -> None:
    """Where one step's time goes: the ops with the most self time (CPU and, on GPU, device time)."""
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA]
                                                          if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof, precision(device, dtype):
        run.step(*batches)
        sync(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"--- profile of one step at r = {ratio} ---")
    print(prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=40))


def split_path(path: str) -> tuple[str, str]:
    """``"fused+cudagraphs"`` -> ``("fused", "cudagraphs")``: the mixed-op implementation and the compile mode."""
    ops, _, compile_mode = path.partition("+")
    return ops, compile_mode or "off"


def measure(config: SearchConfig, data: Any, device: torch.device, dtype: torch.dtype, steps: int,
            warmup: int, profile: bool = False, path: str = "eager") -> dict[str, Any]:
    ops, compile_mode = split_path(path)
    run = SearchRun(config, data, device=device, fused=ops == "fused", compile_mode=compile_mode)
    train, val = (make_loader(s, config.batch_size, shuffle=True, seed=config.seed, drop_last=True)
                  for s in (run.train_set, run.val_set))
    (xt, yt), (xv, yv) = next(iter(train)), next(iter(val))
    batches = ((xt.to(device), yt.to(device)), (xv.to(device), yv.to(device)))
    with precision(device, dtype):
        sync(device)
        start = time.perf_counter()
        run.step(*batches)  # compiles, on a compiled path
        sync(device)
        first_step = time.perf_counter() - start
        for _ in range(warmup - 1):  # the first step counts as warm-up
            run.step(*batches)
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        with precision(device, dtype):
            run.step(*batches)
        sync(device)
        times.append(time.perf_counter() - start)
    if profile:
        print_profile(run, batches, device, dtype, config.keep_ratio)
    uncompiled = run if compile_mode == "off" else SearchRun(config, data, device=device, fused=ops == "fused")
    return {"step_ms": 1e3 * statistics.median(times), "step_ms_min": 1e3 * min(times), "first_step_s": first_step,
            "peak_mem_mb": peak_step_memory(run, batches, device, dtype) / 2**20,
            "step_gflop": step_flops(uncompiled, batches, device, dtype) / 1e9}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratios", type=KEEP_RATIOS, default="0.125,0.25,0.5,1.0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--patch-size", type=int)
    parser.add_argument("--embed-dim", type=int, default=SearchConfig.embed_dim)
    parser.add_argument("--ops", default=",".join(SearchConfig.ops), help="candidate ops (default: the search's)")
    parser.add_argument("--batch-size", type=int, default=SearchConfig.batch_size)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's, one per core); a default sweep's Train worker "
                             "has 1 CPU and runs 1 thread")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the top ops of one step per r")
    parser.add_argument("--paths", default="eager",
                        help="comma-separated: eager or fused mixed ops, each optionally +MODE, a compile mode "
                             f"({', '.join(COMPILE_MODES)})")
    parser.add_argument("--tag", default=None, help="results file stem (default: token_selection_<device>)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    paths = args.paths.split(",")
    for path in paths:
        ops, compile_mode = split_path(path)
        if ops not in ("eager", "fused"):
            parser.error(f"path {path!r}: mixed ops {ops!r} are not eager or fused")
        try:
            validate_compile(compile_mode, torch.device(args.device).type)
        except ValueError as err:
            parser.error(f"path {path!r}: {err}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads {args.threads}: must be >= 1")
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.manual_seed(0)
    data = load_data(DataConfig(args.dataset, image_size=args.image_size))
    base = SearchConfig(data=DataConfig(args.dataset, image_size=args.image_size), patch_size=args.patch_size,
                        ops=tuple(args.ops.split(",")),
                        embed_dim=args.embed_dim, batch_size=args.batch_size)
    rows = []
    for ratio in args.ratios:
        for path in paths:
            rows.append({"path": path, "keep_ratio": ratio, **measure(
                base.with_overrides(keep_ratio=ratio), data, device, dtype, args.steps, args.warmup, args.profile,
                path=path)})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    full = table[table["keep_ratio"] == 1.0].set_index("path")
    for column, ratio in (("step_ms", "time_vs_r1"), ("peak_mem_mb", "mem_vs_r1"), ("step_gflop", "flop_vs_r1")):
        table[ratio] = table[column] / table["path"].map(full[column])
    if "eager" in paths and len(paths) > 1:
        eager = table[table["path"] == "eager"].set_index("keep_ratio")["step_ms"]
        table["speedup_vs_eager"] = table["keep_ratio"].map(eager) / table["step_ms"]
    table["achieved_tflops"] = table["step_gflop"] / table["step_ms"]  # GFLOP / ms = TFLOP/s
    meta = {"device": device_name(device), "dtype": args.dtype, "torch": torch.__version__, "paths": paths,
            "dataset": args.dataset,
            "image_size": data.native_size if args.image_size is None else args.image_size,
            "patch_size": base.resolved_patch_size, "embed_dim": args.embed_dim, "batch_size": args.batch_size,
            "stage0_depth": base.stages[0].depth, "ops": list(base.ops), "steps": args.steps,
            "threads": torch.get_num_threads()}
    if device.type == "cuda":
        meta["matmul_peak_tflops"] = matmul_peak(device, dtype) / 1e12
        table["fraction_of_matmul_peak"] = table["achieved_tflops"] / meta["matmul_peak_tflops"]
    stem = args.tag or f"token_selection_{device.type}"
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / f"{stem}.csv", index=False)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": table.to_dict("records")}, indent=2))
    plot(table, meta, args.out / f"{stem}.png")
    print(json.dumps(meta), "\n", table.to_string(index=False))
    return table


def plot(table: pd.DataFrame, meta: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for implementation, rows in table.groupby("path", sort=False):
        ax.plot(rows["keep_ratio"], rows["time_vs_r1"], marker="o", label=f"step time ({implementation})")
    first = table[table["path"] == table["path"].iloc[0]]
    for column, label in (("mem_vs_r1", "peak step memory"), ("flop_vs_r1", "FLOPs")):
        ax.plot(first["keep_ratio"], first[column], marker="o", label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="proportional to r")
    ax.set(xlabel="keep ratio r", ylabel="relative to r = 1", title=f"{meta['device']}, {meta['dtype']}",
           xlim=(0, 1.05), ylim=(0, 1.1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    freeze_heap_at_exit()  # no final collections over torch's heap at exit (~1 s)
    main()
