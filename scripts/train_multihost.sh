#!/usr/bin/env bash
# Multi-process training: run this SAME command on every host (TPU pod worker, or GPU node).
#   TPU pod:   gcloud compute tpus tpu-vm ssh $TPU --worker=all --command \
#                "cd kopaths && scripts/train_multihost.sh experiments/configs/fmnist_unet.py:ko gs://bucket/run"
#   GPU nodes: COORDINATOR=host0:1234 NUM_PROCESSES=2 PROCESS_ID=<0|1> scripts/train_multihost.sh <config> <workdir>
#              (SLURM and Open MPI launches are auto-detected, like TPU pods, and need no variables.)
# The workdir must be shared by all hosts (GCS or a network file system). Each process feeds its
# slice of the global batch; jax.distributed connects the processes and the config's mesh spans them all.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 <config.py[:arg]> <workdir> [--config.key=value ...]" >&2
  exit 2
fi
config=$1 workdir=$2
shift 2
dist=(--distributed)
if [[ -n "${COORDINATOR:-}" ]]; then
  dist+=(--coordinator_address="$COORDINATOR" --num_processes="${NUM_PROCESSES:?}" --process_id="${PROCESS_ID:?}")
fi
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m kopaths train --config="$config" --workdir="$workdir" "${dist[@]}" "$@"
