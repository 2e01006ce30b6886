#!/usr/bin/env bash
# One GPU check for a machine with an NVIDIA GPU (H200 class: under 8 minutes in all):
#   1. the GPU tests (pytest -m gpu),
#   2. bench/gpu.py (training step and latency per execution mode, WRN-16-8),
#   3. bench/paper_repro.py: the paper's claim, reduced, on full Fashion-MNIST, K = 1 / 2 / 4.
# Results go to $OUT if set, else ./gpu_check_out/. Sets itself up from a fresh checkout.
#   bash bench/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-./gpu_check_out}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.log"
: >"$LOG"
log() { echo "$@" | tee -a "$LOG"; }

if [ ! -x .venv/bin/python ]; then
    log "gpu_check: no .venv, running scripts/setup.sh"
    bash scripts/setup.sh 2>&1 | tee -a "$LOG" || { log "setup failed"; exit 1; }
fi
PY=".venv/bin/python"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; print(torch.__version__, torch.cuda.get_device_name(0))" 2>&1 | tee -a "$LOG" || exit 1

status=0
t0=$(date +%s)
log "== 1. pytest -m gpu"
timeout 150 $PY -m pytest -q -m gpu -p no:cacheprovider 2>&1 | tee "$OUTDIR/pytest_gpu.txt" | tail -5 | tee -a "$LOG"
rc=${PIPESTATUS[0]}; log "pytest -m gpu rc=$rc ($(( $(date +%s) - t0 )) s)"; [ "$rc" -eq 0 ] || status=1

t1=$(date +%s)
log "== 2. bench/gpu.py"
(cd bench && timeout 120 ../$PY gpu.py) 2>&1 | tee "$OUTDIR/bench_gpu.txt" | tail -20 | tee -a "$LOG"
rc=${PIPESTATUS[0]}; log "bench/gpu.py rc=$rc ($(( $(date +%s) - t1 )) s)"; [ "$rc" -eq 0 ] || status=1

t2=$(date +%s)
log "== 3. bench/paper_repro.py (15 epochs or 50 s of training per K)"
timeout 200 $PY bench/paper_repro.py --epochs 15 --budget-s 50 --out "$OUTDIR/paper_repro.json" \
    2>&1 | tee "$OUTDIR/paper_repro.txt" | tail -8 | tee -a "$LOG"
rc=${PIPESTATUS[0]}; log "paper_repro rc=$rc ($(( $(date +%s) - t2 )) s)"; [ "$rc" -eq 0 ] || status=1

log "gpu_check: total $(( $(date +%s) - t0 )) s, status $status, results in $OUTDIR"
exit $status
