#!/bin/bash
# One prepared device check (issue 12 GPU part, issue 19 partial): tests, step benchmark,
# a real PGD-AT PreActResNet-18 run on CIFAR-10 (JPEG q75) and a timed AutoAttack subset.
# Usage: bash .gpu/run.sh EPOCHS DEADLINE_S
set -u
EPOCHS=${1:-20}; DEADLINE=${2:-540}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PWD/.gpu/site PYTHONUNBUFFERED=1 CLASSWISE_DATA=$PWD/.gpu/data CLASSWISE_CACHE=/tmp/cwcache
DEV=${DEV:-cuda}
T0=$(date +%s)
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/steps.log"; }
cw() { python3 -c 'import sys; from classwise.cli import main; sys.exit(main())' "$@"; }
PY=$(command -v python3)
log "date $(date -u +%FT%TZ)"
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')") >> "$OUT/steps.log" 2>&1
log "tests/test_cuda.py"
CLASSWISE_TEST_DEVICE=$DEV timeout 110 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -x > "$OUT/test_cuda.log" 2>&1; log "tests rc=$?"
log "bench_train"
timeout 90 python3 benchmarks/bench_train.py --device $DEV --iters 20 > "$OUT/bench.log" 2>&1; log "bench rc=$?"
log "train pgd-at preact_resnet18 $EPOCHS epochs"
S=$(date +%s)
timeout $(( $(left) - 120 )) bash -c "$(declare -f cw); cw train --device $DEV --out runs/gpu/pgd-at-preact18 \
  --set data.dataset=cifar10-jpeg.tar.gz --set model.name=preact_resnet18 --set method.name=pgd-at \
  --set threat.eps=8/255 --set optim.epochs=$EPOCHS --set optim.schedule=onecycle --set optim.lr=0.2 \
  --set 'evaluation.attacks=[{name: pgd, args: {steps: 20}}]' --set evaluation.batch_size=1000 ${SMALL:-}" > "$OUT/train.log" 2>&1
log "train rc=$? wall $(( $(date +%s) - S ))s"
if [ -f runs/gpu/pgd-at-preact18/best.pt ] && [ "$(left)" -gt 60 ]; then
  N=100; [ "$(left)" -lt 200 ] && N=30
  log "autoattack standard, first $N test images per class"
  S=$(date +%s)
  timeout $(( $(left) - 15 )) bash -c "$(declare -f cw); cw evaluate --checkpoint runs/gpu/pgd-at-preact18/best.pt \
    --dataset cifar10-jpeg.tar.gz --attack autoattack --n-per-class $N --batch-size 1000 --device $DEV \
    --out runs/gpu/aa-preact18-$N" > "$OUT/aa.log" 2>&1
  log "autoattack rc=$? wall $(( $(date +%s) - S ))s"
fi
tar czf "$OUT/runs.tar.gz" --exclude='*.pt' runs/gpu 2>/dev/null; log "done"
