#!/usr/bin/env bash
# The timm and RobustBench integrations, run for real (CI skips them: the development machines' CPU
# torch has no matching torchvision). In a scratch virtual environment VENV (default
# /tmp/classwise-integrations), from the repository root:
#
#   bash benchmarks/integrations.sh [VENV]            # the standard torch build and its torchvision
#   CPU=1 bash benchmarks/integrations.sh [VENV]      # the CPU builds, from download.pytorch.org
#
# 1. installs torch 2.13.0 with torchvision 0.28.0, then classwise with its timm and robustbench
#    extras (pip's isolated mode, so a machine's local wheel folder or pip configuration is ignored);
# 2. runs tests/test_sources.py with CLASSWISE_REQUIRE_INTEGRATIONS=1, so an integration that would
#    skip fails instead: a timm model from a local weights file, a RobustBench zoo entry by name from
#    a local model folder through `classwise audit`, an absent download and a misspelt name;
# 3. where CLASSWISE_DATA holds cifar10-jpeg.tar.gz: puts two zoo architectures (Wong2020Fast, a
#    PreActResNet-18, and Engstrom2019Robustness, a ResNet-50) with fresh weights in a local model
#    folder in RobustBench's layout, and runs `classwise audit` on one and `classwise leaderboard` on
#    both, on 5 real test images per class. Fresh weights, because the zoo's weights are downloaded
#    from Google Drive, which these machines cannot reach; the numbers show the path works end to
#    end, not how robust the published models are.
set -euo pipefail
venv=${1:-/tmp/classwise-integrations}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 -m venv "$venv"
if [ -n "${CPU:-}" ]; then
    "$venv/bin/pip" install --isolated -q torch==2.13.0 torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cpu
else
    "$venv/bin/pip" install --isolated -q torch==2.13.0 torchvision==0.28.0
fi
"$venv/bin/pip" install --isolated -q -e '.[dev,timm,robustbench]'
# robustbench imports AutoAttack as `autoattack`; classwise registers its pinned pyautoattack under
# that name when it loads a zoo entry, so robustbench is imported through classwise here
"$venv/bin/python" -c 'import torch, torchvision, timm; from classwise.models.sources import _robustbench_modules as z; z()
print("torch", torch.__version__, "torchvision", torchvision.__version__, "timm", timm.__version__)'

CLASSWISE_REQUIRE_INTEGRATIONS=1 "$venv/bin/pytest" -q -p no:cacheprovider tests/test_sources.py

if [ ! -f "${CLASSWISE_DATA:-}/cifar10-jpeg.tar.gz" ]; then
    echo "CLASSWISE_DATA has no cifar10-jpeg.tar.gz: the audit on real images is left out"
    exit 0
fi
"$venv/bin/python" - "$work/zoo" <<'EOF'
import sys
from pathlib import Path

import torch

from classwise.models.sources import _robustbench_modules

zoo = _robustbench_modules()
entries = zoo.model_dicts[zoo.BenchmarkDataset("cifar10")][zoo.ThreatModel("Linf")]
for name in ("Wong2020Fast", "Engstrom2019Robustness"):
    path = Path(sys.argv[1]) / "cifar10" / "Linf" / f"{name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": entries[name]["model"]().state_dict()}, path)
    print(f"{name}: fresh weights of its architecture in {path}")
EOF
real=(--dataset cifar10-jpeg.tar.gz --threat-model Linf --model-dir "$work/zoo" --n-per-class 5)
"$venv/bin/classwise" audit robustbench:Wong2020Fast "${real[@]}" --out "$work/audit"
"$venv/bin/classwise" leaderboard robustbench:Wong2020Fast robustbench:Engstrom2019Robustness "${real[@]}" \
    --attack pgd --steps 10 --out "$work/board"
head -20 "$work/board/leaderboard.md"
