#!/usr/bin/env bash
# One command for a GPU machine: the tests marked `cuda`, the loss and Recall@K speed benchmarks,
# the data-loader speed and the training throughput, merged into one report (JSON + markdown).
#
#   bash reproduce/gpu_check.sh [--out DIR] [--cpu-quick]
#
# With a GPU (torch.cuda.is_available()), in at most 8 minutes (GPU_CHECK_BUDGET_S, default 480;
# every step runs under `timeout`, its limit cut to what is left of the budget):
#   pytest_cuda       pytest -m cuda over tests/ (junit XML kept)
#   loss_speed        reproduce/benchmarks/loss_speed.py --device cuda (ours vs PML, naive, GEMM)
#   eval_speed        reproduce/benchmarks/eval_speed.py --device cuda (ours vs PML, dense, faiss)
#   loader_speed      reproduce/benchmarks/loader_speed.py --device cuda (PIL vs GPU JPEG decode,
#                     DataLoader with 0-8 workers)
#   train_throughput  reproduce/benchmarks/train_throughput.py --device cuda (BN-Inception batch
#                     180, ViT-S/16 batch 128; fp32, bf16, channels_last; 224 px)
# then reproduce/gpu_report.py writes DIR/gpu_check.json and DIR/gpu_check.md (default DIR:
# reproduce/results/gpu_check). Without a GPU the same steps run on the CPU at tiny sizes and
# the report lists what was skipped and why. --cpu-quick: hide any GPU, run only the quickest
# CPU steps (about a minute on a busy 2-core machine; for the test suite).
# Exit code: 0 when every step that ran succeeded and no test failed, else 1 (2: bad arguments).
set -euo pipefail

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$REPO/reproduce/results/gpu_check"
QUICK=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) [[ $# -ge 2 ]] || { echo "error: --out needs a folder" >&2; exit 2; }
               OUT="$2"; shift 2 ;;
        --out=*) OUT="${1#--out=}"; shift ;;
        --cpu-quick) QUICK=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument '$1'; expected --out DIR or --cpu-quick (see --help)" >&2
           exit 2 ;;
    esac
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python}"
BUDGET="${GPU_CHECK_BUDGET_S:-480}"
REPORT_RESERVE=20 # seconds kept for the report
RAW="$OUT/raw"
rm -rf "$RAW"
mkdir -p "$RAW"
STEPS="$RAW/steps.tsv" # name, status, exit code, milliseconds, note, command
: >"$STEPS"

if [[ $QUICK == 1 ]]; then
    export CUDA_VISIBLE_DEVICES="" # the CPU path, whatever the machine has
fi
HAS_GPU="$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))')"
if [[ $QUICK == 1 ]]; then
    MODE="cpu-quick"
elif [[ $HAS_GPU == 1 ]]; then
    MODE="gpu"
else
    MODE="cpu"
fi
echo "gpu_check: mode $MODE, results in $OUT (budget ${BUDGET}s)"

skip_step() { # name reason
    printf '%s\tskipped\t\t0\t%s\t\n' "$1" "$2" >>"$STEPS"
    echo "== $1: skipped ($2)"
}

run_step() { # name limit_s note command...
    local name="$1" limit="$2" note="$3"
    shift 3
    local left=$((BUDGET - REPORT_RESERVE - SECONDS))
    if ((left < 10)); then
        skip_step "$name" "the ${BUDGET}s budget is spent"
        return
    fi
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit}s): $*"
    local start end rc status
    start=$(date +%s%N)
    if timeout --kill-after=10 "$limit" "$@" >"$RAW/$name.log" 2>&1; then rc=0; else rc=$?; fi
    end=$(date +%s%N)
    case $rc in
        0) status=ran ;;
        124 | 137) status=timed_out; note="stopped after ${limit}s. $note" ;;
        *) status=failed ;;
    esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" $(((end - start) / 1000000)) \
        "$note" "$*" >>"$STEPS"
    echo "   $status (exit $rc); log $RAW/$name.log"
    tail -n 2 "$RAW/$name.log" | sed 's/^/   | /'
}

PYTEST=("$PYTHON" -m pytest -m cuda -q -p no:cacheprovider --junitxml="$RAW/pytest_cuda.xml")
BENCH="reproduce/benchmarks"
if [[ $MODE == gpu ]]; then
    run_step pytest_cuda 120 "" "${PYTEST[@]}" tests
    run_step loss_speed 75 "" "$PYTHON" "$BENCH/loss_speed.py" --device cuda \
        --shapes cub,sop,large --mem-limit-gb 40 --out "$RAW/loss_speed.json"
    run_step eval_speed 150 "faiss contenders run on the CPU" \
        "$PYTHON" "$BENCH/eval_speed.py" --device cuda --out "$RAW/eval_speed.json"
    run_step loader_speed 60 "" "$PYTHON" "$BENCH/loader_speed.py" --device cuda \
        --images 192 --repeats 2 --workers 0,2,4,8 --batch 32 --out "$RAW/loader_speed.json"
    run_step train_throughput 100 "" "$PYTHON" "$BENCH/train_throughput.py" --device cuda \
        --steps 10 --warmup 3 --cudnn-benchmark --in-process --out "$RAW/train_throughput.json"
else
    NO_GPU="no CUDA GPU (torch.cuda.is_available() is False)"
    [[ $MODE == cpu-quick ]] && NO_GPU="--cpu-quick hides the GPU"
    TINY="CPU at a tiny size; the CUDA run skipped: $NO_GPU"
    if [[ $MODE == cpu-quick ]]; then
        run_step pytest_cuda 60 "tests/cuda only" "${PYTEST[@]}" tests/cuda
        skip_step loss_speed "--cpu-quick (its CPU run takes ~30 s here); CUDA run: $NO_GPU"
        skip_step eval_speed "--cpu-quick (its CPU run takes ~45 s here); CUDA run: $NO_GPU"
    else
        mapfile -t CUDA_FILES < <(grep -rl --include='*.py' 'pytest.mark.cuda' tests | sort)
        run_step pytest_cuda 120 "files with cuda tests" "${PYTEST[@]}" "${CUDA_FILES[@]}"
        run_step loss_speed 120 "$TINY" "$PYTHON" "$BENCH/loss_speed.py" --device cpu \
            --shapes tiny --repeats 3 --rounds 1 --warmup 1 --out "$RAW/loss_speed.json"
        run_step eval_speed 150 "$TINY" "$PYTHON" "$BENCH/eval_speed.py" --device cpu --quick \
            --only inshop --threads 1 --out "$RAW/eval_speed.json"
    fi
    run_step loader_speed 60 "$TINY" "$PYTHON" "$BENCH/loader_speed.py" --device cpu \
        --images 8 --repeats 1 --warmup 0 --workers 0,1 --batch 4 --loader-repeats 1 \
        --out "$RAW/loader_speed.json"
    BACKBONES=bn_inception,vit_small_patch16_224
    [[ $MODE == cpu-quick ]] && BACKBONES=bn_inception
    run_step train_throughput 90 "$TINY" "$PYTHON" "$BENCH/train_throughput.py" --device cpu \
        --backbones "$BACKBONES" --contenders fp32,bf16 --image-size 32 --batch 2 --steps 1 \
        --warmup 0 --threads 1 --in-process --out "$RAW/train_throughput.json"
fi

"$PYTHON" reproduce/gpu_report.py --raw "$RAW" --out "$OUT" --mode "$MODE"
