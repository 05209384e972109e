#!/usr/bin/env bash
# Every GPU measurement of issues 5, 6 and 14 and the opt-in GPU tests, each output in a file.
#   bash bench/gpu.sh OUTDIR [tests|model|compile|e2e|data|packing|memory|deterministic]...
#   (default: all)
# Each part should fit one 10-minute device call (not yet timed on the GPU machine). Run from
# the repository root; Ray and Optuna (packing only) come from .gpu/ when
# the workplace's GPU bundle script wrote it.
set -u
if [ -f .gpu/activate ]; then source .gpu/activate; fi
out=${1:?usage: bash bench/gpu.sh OUTDIR [tests|model|compile|e2e|data|packing]...}
shift
parts=${*:-tests model compile e2e data packing memory deterministic}
mkdir -p "$out"
run() {  # run NAME COMMAND...: the output to OUTDIR/NAME.txt and the terminal
    echo "== $name: $*" | tee -a "$out/$name.txt"
    "$@" 2>&1 | tee -a "$out/$name.txt"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
for part in $parts; do
    name=$part
    case $part in
    tests) run python -m pytest -q -m gpu -p no:cacheprovider ;;
    model)
        run python bench/train_throughput.py --shapes cremad kinetics_sounds --device cuda \
            --precision fp32
        run python bench/train_throughput.py --shapes cremad kinetics_sounds --device cuda \
            --rollingq-cost ;;
    compile)
        run python bench/train_throughput.py --shapes cremad kinetics_sounds --device cuda \
            --compile --rollingq-cost
        run python bench/train_throughput.py --shapes cremad --device cuda --compile --batch 128 ;;
    e2e)
        run python bench/train_throughput.py --shapes cremad --device cuda --compile \
            --end-to-end 2000 ;;
    data) run python bench/data_throughput.py --clips 2000 --device cuda ;;
    packing) run python bench/packing.py ;;
    memory) run python bench/memory.py --device cuda ;;
    deterministic)  # the cost of train.deterministic
        run python bench/train_throughput.py --shapes cremad kinetics_sounds --device cuda \
            --deterministic-cost ;;
    *) echo "unknown part $part; valid: tests model compile e2e data packing memory" \
            "deterministic" >&2
       exit 2 ;;
    esac
done
