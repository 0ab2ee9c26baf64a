#!/usr/bin/env bash
# Idempotent install: venv in .venv with the tested torch/torchvision versions (README, "Install"), the project
# with its tune+dev extras, and the offline Fashion-MNIST data from Debian if apt exists.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch, torchvision, ray, optuna, hinterval" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.hinterval-installed ]; then
  # torch and torchvision in one command: installed apart, pip may swap torch for another build
  .venv/bin/pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "WARNING: Location" || true
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "WARNING: Location" || true
  .venv/bin/python -c "import torch, torchvision, ray, optuna, hinterval"
  touch .venv/.hinterval-installed
fi
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests will be skipped" >&2
fi
