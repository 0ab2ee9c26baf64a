#!/usr/bin/env bash
# Install (idempotent) and run the test suite. Used by README quick start and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/python -m pytest "$@"
