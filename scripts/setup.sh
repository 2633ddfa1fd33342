#!/usr/bin/env bash
# Set up a virtual environment in .venv with everything the project needs.
# torch==2.13.0 goes first, from where scripts/torch_source.py says: a local wheel pip already
# reaches (no network probe), else the PyTorch CPU index without an NVIDIA GPU on Linux, else
# the default index (the CUDA build; on macOS PyPI's CPU/MPS build). Left to the project's
# dependencies, pip would pull the multi-GB CUDA build onto any Linux machine.
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
if have="$("$py" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null)" \
  && [[ "$have" == 2.13.0* ]]; then
  echo "setup: torch $have already installed"
else
  plan="$("$py" scripts/torch_source.py)"  # pip arguments, one a line; the reason on stderr
  mapfile -t torch_args <<<"$plan"
  "$py" -m pip install -q "${torch_args[@]}" 2>&1 | grep -v "^WARNING: Location" || true
fi
"$py" -m pip install -q -c constraints.txt -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
"$py" - <<'PY'
import torch, transformers, trl, ray  # noqa: F401  (fail loudly here, not in the first test)
assert torch.__version__.startswith("2.13.0"), f"torch {torch.__version__}: expected 2.13.0"
print(f"setup: ok (torch {torch.__version__}, transformers {transformers.__version__}, "
      f"trl {trl.__version__}, ray {ray.__version__})")
PY
