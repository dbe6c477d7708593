#!/usr/bin/env bash
# Set-up (idempotent), then the test suite on the CPU. Extra arguments go to pytest.
# Two pytest-xdist workers (KOPATHS_TEST_WORKERS, 0 for one process): much of the suite is
# single-threaded tracing, compilation and subprocesses, so two keep both cores of a 2-core machine busy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -n "${KOPATHS_TEST_WORKERS:-2}" "$@"
