#!/usr/bin/env bash
# The Omniglot loss comparison (the Proxy-Anchor paper's Figure 1 on the bundled data, on a CPU).
# Default: the budget of the published table (reproduce/README.md, "Omniglot loss comparison"):
# 6 losses x 3 seeds, 6 epochs, class_rotations 1, an lr sweep for the other losses, 2 runs at a
# time with one thread each (~40 min on 2 shared cores). Extra arguments go to the script, e.g.
#   reproduce/omniglot_compare.sh --epochs 12 --set scheduler.step=4   (the default recipe's budget)
# Finished runs in the output folder are reused, so an interrupted comparison continues.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec python "$HERE/omniglot_compare.py" --seeds 1 2 3 --epochs 6 --jobs 2 --lrs 5e-4 2e-3 \
  --extra-lrs multi_similarity=4e-3 multi_similarity=8e-3 contrastive=4e-3 \
  --set data.class_rotations=1 scheduler.step=2 "$@"
