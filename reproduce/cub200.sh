#!/usr/bin/env bash
# Reproduce Proxy-Anchor on CUB-200-2011 (docs/paper.md section 2 recipe, 60 epochs, embedding 512).
# Usage: reproduce/cub200.sh DATA_ROOT WEIGHTS [RUN_DIR] [key=value overrides...]
#   DATA_ROOT  the data set folder (layout: reproduce/DATASETS.md)
#   WEIGHTS    bn_inception-52deb4733.pth (or the torchvision ResNet-50 file with BACKBONE=resnet50)
# Re-running continues an interrupted run; results: RUN_DIR/results.md and results.json.
set -euo pipefail
BACKBONE=${BACKBONE:-bninception}
exec "$(dirname "$0")/_run.sh" cub200 "cub200_${BACKBONE}.yaml" "$@"
