#!/usr/bin/env bash
# Single-host training. Usage:
#   scripts/train_local.sh experiments/configs/fmnist_unet.py:ko /tmp/fmnist_ko [--config.total_steps=2000 ...]
# Re-running the same command resumes from the last checkpoint in the workdir; Ctrl-C saves and exits.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 <config.py[:arg]> <workdir> [--config.key=value ...]" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m kopaths train --config="$config" --workdir="$workdir" "$@"
