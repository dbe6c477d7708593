#!/usr/bin/env bash
# The main job on the built-in default data (Fashion-MNIST): set-up, then `kopaths run`.
# Extra arguments go to `kopaths run`, e.g. --outdir DIR or --config.separation.num_noise=512.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/kopaths run "$@"
