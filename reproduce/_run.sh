#!/usr/bin/env bash
# Shared by cub200.sh, cars196.sh, sop.sh, inshop.sh: check the data, train (or continue an
# interrupted run), evaluate the best checkpoint, print results.md (ours beside the paper).
# Usage: _run.sh DATASET CONFIG DATA_ROOT WEIGHTS [RUN_DIR] [key=value overrides...]
set -euo pipefail
DATASET=$1 CONFIG=$2 DATA_ROOT=$3 WEIGHTS=$4
shift 4
RUN_DIR=runs/$(basename "$CONFIG" .yaml)
if [ $# -gt 0 ] && [[ "$1" != *=* ]]; then RUN_DIR=$1; shift; fi
PML=${PML_PROXY_ANCHOR:-pml-proxy-anchor}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[ -e "$WEIGHTS" ] || { echo "error: weight file $WEIGHTS not found (see reproduce/README.md)" >&2; exit 2; }
$PML data check "$DATASET" "$DATA_ROOT"
RESUME=()
[ -f "$RUN_DIR/checkpoints/last.pt" ] && RESUME=(--resume) && echo "continuing $RUN_DIR"
$PML train "$HERE/../configs/$CONFIG" data.root="$DATA_ROOT" model.pretrained="$WEIGHTS" \
  --run-dir "$RUN_DIR" ${RESUME[@]+"${RESUME[@]}"} "$@"
$PML eval "$RUN_DIR" --which best
cat "$RUN_DIR/results.md"
