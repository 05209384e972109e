#!/usr/bin/env bash
# The GPU run, from the repository root on a GPU node:
#   bash bench/gpu.sh OUTDIR                  the CUDA checks in one run of under 8 minutes
#                                             (bench/gpu_checks.py): one PASS/WARN/FAIL/SKIP/INFO
#                                             line per check, each check's log in OUTDIR; exit
#                                             status = the number of FAIL lines
#   bash bench/gpu.sh OUTDIR PART...          the longer measurements, each meant for a call of
#                                             its own: model compile e2e data packing memory
#                                             deterministic (OUTDIR/PART.txt, rewritten)
# Without a CUDA device the checks run their CPU fallback (small shapes; CUDA-only checks SKIP).
# Ray and Optuna (packing only) come from .gpu/ when the workplace's GPU bundle script wrote it.
set -uo pipefail
if [ -f .gpu/activate ]; then source .gpu/activate; fi
out=${1:?usage: bash bench/gpu.sh OUTDIR [model|compile|e2e|data|packing|memory|deterministic]...}
shift
mkdir -p "$out"
if [ $# -eq 0 ]; then
    exec python bench/gpu_checks.py --out "$out"
fi
status=0
run() {  # run COMMAND...: its output to OUTDIR/PART.txt and the terminal
    echo "== $part: $*" | tee -a "$out/$part.txt"
    "$@" 2>&1 | tee -a "$out/$part.txt" || status=1
}
for part in "$@"; do
    rm -f "$out/$part.txt"
    case $part in
    model)
        run python bench/train_throughput.py --shapes cremad kinetics_sounds --device cuda \
            --precision fp32
        run python bench/train_throughput.py --shapes cremad kinetics_sounds --device cuda \
            --rollingq-cost ;;
    compile)
        run python bench/train_throughput.py --shapes cremad kinetics_sounds --device cuda \
            --compile --rollingq-cost ;;
    e2e)
        run python bench/train_throughput.py --shapes cremad --device cuda --compile \
            --end-to-end 2000 ;;
    data) run python bench/data_throughput.py --clips 2000 --device cuda ;;
    packing) run python bench/packing.py ;;
    memory) run python bench/memory.py --device cuda ;;
    deterministic)  # the cost of train.deterministic
        run python bench/train_throughput.py --shapes cremad kinetics_sounds --device cuda \
            --deterministic-cost ;;
    *) echo "unknown part $part; valid: model compile e2e data packing memory deterministic" \
            "(or none: the checks)" >&2
       exit 2 ;;
    esac
done
exit $status
