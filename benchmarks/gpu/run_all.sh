#!/usr/bin/env bash
# Every GPU benchmark in one run, on a GPU host without network access whose image lacks Ray, MLflow and Optuna:
# they come as a prebuilt Python 3.12 site, .whl/site312.tar.xz (benchmarks/gpu/build_site.sh). Writes
# $OUT/results.tgz.
#   bash benchmarks/gpu/run_all.sh          (on the GPU host, from the repository root)
# PARTS=sweep runs only the GPU sweep, PARTS=compile only the compiled-step measurements (CUDA graphs),
# PARTS=exit only the probe of the exit after SIGTERM during GPU retraining (~4 min);
# SWEEP_ARGS adds sweep.py flags (e.g. a shorter sweep); DEADLINE bounds the whole run in seconds.
set -u
OUT=${OUT:-/tmp/gpu_out}
R=$OUT/r
mkdir -p "$R"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
finish() { pkill -f "nvidia-smi --query" 2>/dev/null; tar -czf "$OUT/results.tgz" --exclude=ray_results -C "$R" .; }
trap finish EXIT
DEADLINE=${DEADLINE:-570}
{ nvidia-smi; nproc; python3 -c "import torch, sys; print(sys.version); print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"; } > "$R/env.txt" 2>&1
tar -xJf .whl/site312.tar.xz -C /tmp && export PYTHONPATH=/tmp/site312:$PWD
# only py-spy goes on PATH: the site's other scripts (ray, mlflow ...) carry the build machine's interpreter path
mkdir -p /tmp/site312_tools && ln -sf /tmp/site312/bin/py-spy /tmp/site312_tools/py-spy && export PATH=/tmp/site312_tools:$PATH
python3 -c "import ray, mlflow, optuna, mlxtend; print('ray', ray.__version__, 'mlflow', mlflow.__version__, 'optuna', optuna.__version__)" 2>&1 | tail -3 | tee -a "$R/env.txt"
echo "setup done at ${SECONDS}s"

B="python3 benchmarks"
if [ "${PARTS:-all}" = exit ]; then
    # A short GPU sweep stopped by SIGTERM 5 s into its retraining; the driver's stacks (py-spy, in the
    # site) at 2, 10 and 30 s, its processes every 0.25 s, and what outlives it.
    timeout 420 $B/exit_after_sigterm.py --config experiments/configs/gpu.yaml --delay 5 --watch 120 \
        --sweep-args "--num-trials 2 --epochs 1 --top-k 2 --retrain-epochs 30" --tag exit_after_sigterm_cuda \
        --out "$R" 2>&1 | tail -30
    exit 0
fi
if [ "${PARTS:-all}" = compile ]; then
    # The compiled step (dasvit.compiled): CUDA graphs of the traced step, and of inductor's
    # kernels, against the uncompiled fused step in the same run; first_step_s holds each compile.
    timeout 280 $B/token_selection.py --device cuda --dtype bf16 --image-size 224 --patch-size 16 --embed-dim 384 \
        --batch-size 64 --ratios 0.25,1.0 --paths fused,fused+cudagraphs,fused+inductor-cudagraphs --steps 15 \
        --tag token_selection_cuda_d384_compiled --out "$R" 2>&1 | tail -8
    timeout 200 $B/token_selection.py --device cuda --dtype bf16 --image-size 224 --patch-size 16 --embed-dim 768 \
        --batch-size 256 --ratios 1.0 --paths fused,fused+cudagraphs,fused+inductor-cudagraphs --steps 8 \
        --tag token_selection_cuda_vitb_compiled --out "$R" 2>&1 | tail -6
    exit 0
fi

# The sweep on the GPU, GPU utilisation sampled every second.
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 > "$R/gpu_util.csv" 2>&1 &
nvidia-smi --query-compute-apps=timestamp,pid,used_memory --format=csv -l 1 > "$R/gpu_processes.csv" 2>&1 &
start=$SECONDS
# shellcheck disable=SC2086
timeout "${SWEEP_SECONDS:-300}" python3 experiments/sweep.py --config experiments/configs/gpu.yaml --workdir "$R/sweep" \
    --address local ${SWEEP_ARGS:-} > "$R/sweep.log" 2>&1
echo "sweep rc=$? wall=$((SECONDS - start))s" | tee -a "$R/sweep.log"
pkill -f "nvidia-smi --query"; pkill -f gcs_server; pkill -f raylet; sleep 2
tail -25 "$R/sweep.log"

[ "${PARTS:-all}" = sweep ] && exit 0
left() { echo $((DEADLINE - SECONDS)); }
# The default 3-stage search per epoch on CIFAR-10-shaped synthetic data.
timeout 60 $B/search_cost_cifar.py --device cuda --dtype bf16 --fused --steps 30 --out "$R" 2>&1 | tail -8
# r = 0.25 vs r = 1 at batch 64, 224 px, D 384, eager and fused.
timeout 70 $B/token_selection.py --device cuda --dtype bf16 --image-size 224 --patch-size 16 --embed-dim 384 \
    --batch-size 64 --ratios 0.25,1.0 --paths eager,fused --steps 15 --tag token_selection_cuda_d384 --out "$R" 2>&1 | tail -6
# Fraction of the bf16 matmul peak at ViT-B width, batch 256, r = 1.
timeout 60 $B/token_selection.py --device cuda --dtype bf16 --image-size 224 --patch-size 16 --embed-dim 768 \
    --batch-size 256 --ratios 1.0 --paths fused --steps 8 --tag token_selection_cuda_vitb --out "$R" 2>&1 | tail -4
# The paper's memory figure at ViT-B scale.
timeout "$(left)" $B/vit_b_memory.py --device cuda --dtype bf16 --repeats 3 --max-batch-limit 2048 --out "$R" 2>&1 | tail -12
echo "all done at ${SECONDS}s"
