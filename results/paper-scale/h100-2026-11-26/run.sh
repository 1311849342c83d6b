#!/bin/bash
# Issue 19, one device step: PGD-AT PreActResNet-18, 30 epochs onecycle (the recipe),
# PGD-20 on all 10,000 test images, then standard AutoAttack on as many test images per class
# as the deadline leaves; the best checkpoint comes back split in 15 MiB parts.
# Usage: bash .gpu/run19.sh METHOD EPOCHS DEADLINE_S
set -u
METHOD=${1:-pgd-at}; EPOCHS=${2:-30}; DEADLINE=${3:-540}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PWD/.gpu/site PYTHONUNBUFFERED=1 CLASSWISE_DATA=$PWD/.gpu/data CLASSWISE_CACHE=/tmp/cwcache
T0=$(date +%s)
left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/steps.log"; }
cw() { python3 -c 'import sys; from classwise.cli import main; sys.exit(main())' "$@"; }
RUN=runs/gpu/$METHOD-preact18
log "date $(date -u +%FT%TZ)"
(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')") >> "$OUT/steps.log" 2>&1
log "train $METHOD preact_resnet18 $EPOCHS epochs"
S=$(date +%s)
timeout $(( $(left) - 90 )) bash -c "$(declare -f cw); cw train --device cuda --out $RUN \
  --set data.dataset=cifar10-jpeg.tar.gz --set model.name=preact_resnet18 --set method.name=$METHOD \
  --set threat.eps=8/255 --set optim.epochs=$EPOCHS --set optim.schedule=onecycle --set optim.lr=0.2 \
  --set 'evaluation.attacks=[{name: pgd, args: {steps: 20}}]' --set evaluation.batch_size=1000" > "$OUT/train.log" 2>&1
log "train rc=$? wall $(( $(date +%s) - S ))s"
if [ -f $RUN/best.pt ] && [ "$(left)" -gt 70 ]; then
  N=$(( ($(left) - 45) * 10 / 6 / 10 * 10 )); [ $N -gt 1000 ] && N=1000; [ $N -lt 20 ] && N=20
  log "autoattack standard, first $N test images per class"
  S=$(date +%s)
  timeout $(( $(left) - 12 )) bash -c "$(declare -f cw); cw evaluate --checkpoint $RUN/best.pt \
    --dataset cifar10-jpeg.tar.gz --attack autoattack --n-per-class $N --batch-size 1000 --device cuda \
    --out runs/gpu/aa-$METHOD-preact18-$N" > "$OUT/aa.log" 2>&1
  log "autoattack rc=$? wall $(( $(date +%s) - S ))s"
fi
tar czf "$OUT/runs.tar.gz" --exclude='*.pt' runs/gpu 2>/dev/null
[ -f $RUN/best.pt ] && mkdir -p "$OUT/ckpt" && split -b 15M -d $RUN/best.pt "$OUT/ckpt/best.pt.part"
log "done"
