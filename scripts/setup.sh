#!/usr/bin/env bash
# Set up a virtual environment in .venv with everything the project needs (CPU machine).
# torch==2.13.0 goes first: it is a CPU build; an unpinned torch pulls a multi-GB CUDA build.
# Idempotent: a second run only checks that the pinned set is installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV="${ANCHOR_VENV:-$root/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
py="$VENV/bin/python"
"$py" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$py" -m pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
"$py" -m pip install -q -c constraints.txt -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
"$py" - <<'PY'
import torch, transformers, trl, ray  # noqa: F401  (fail loudly here, not in the first test)
assert torch.__version__.startswith("2.13.0"), f"torch {torch.__version__}: expected 2.13.0 (CPU)"
print(f"setup: ok (torch {torch.__version__}, transformers {transformers.__version__}, "
      f"trl {trl.__version__}, ray {ray.__version__})")
PY
