#!/bin/bash
# GPU figures on one machine with no network (the device machine): Ray Data vs plain loop and
# Ray Train DPO vs plain TRL, the keyed sampler, the HF engine vs plain generate, on a random-initialised Llama-3-8B-shaped model (bench.random_model).
#
#   bash bench/gpu.sh [ARCH] [OUT]     # ARCH: llama-3-8b (default) or tiny (CPU smoke run)
#   BENCHES="sampler" SAMPLER_TIMEOUT=150 bash bench/gpu.sh     # the sampler bench alone
#   BENCHES="dpo" DPO_TIMEOUT=420 DPO_ARGS="--pairs 128" bash bench/gpu.sh   # one bench, more time
#
# Reads wheels from .gpu/whl (Ray without its Java jars, TRL, datasets, ...: the GPU image has
# torch, transformers, accelerate, pandas, pyarrow) and the embedded model's tokenizer from
# .gpu/tok; docs/DESIGN.md says how they were gathered. Figures go to OUT (default $OUT).
set -u
ARCH=${1:-llama-3-8b}
OUT=${2:-${OUT:-/tmp/gpu-out}}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if [ -d .gpu/whl ] && ! python3 -c "import ray, trl" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
GPU=--gpu; SET=(--set pipeline.sample.num_gpus=1 --set pipeline.judge.num_gpus=1)
DEVICE=cuda
if [ "$ARCH" = tiny ]; then GPU=; SET=(); DEVICE=cpu; fi
{
  date; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  python3 -c "import sys, torch, transformers, ray, trl, peft, datasets, pyarrow; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'ray', ray.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__)"
} 2>&1 | tee "$OUT/env.txt"
M=/tmp/random-$ARCH
[ -f "$M/config.json" ] || python3 -m bench.random_model --arch "$ARCH" --tokenizer .gpu/tok \
  --out "$M" --device $DEVICE 2>&1 | tee "$OUT/model.log"
BENCHES=${BENCHES:-sampler hfgen pipeline dpo}
if [[ " $BENCHES " == *" sampler "* ]]; then
# The keyed noise must be bit-identical on CPU and CUDA (tests/test_engine_sampler.py).
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_engine_sampler.py > "$OUT/sampler-test.log" 2>&1
echo "test_engine_sampler rc=$?"; tail -3 "$OUT/sampler-test.log"
timeout "${SAMPLER_TIMEOUT:-150}" python3 -m bench.sampler --device $DEVICE --reps 5 \
  --kinds near-uniform --json "$OUT/sampler.json" > "$OUT/sampler.log" 2>&1
echo "bench.sampler rc=$?"; grep -v Loading "$OUT/sampler.log" | tail -12
fi
if [[ " $BENCHES " == *" hfgen "* ]]; then
# The HF engine's keyed sampling vs plain generate (top-p), batch 128 x 128 new tokens.
BATCH=128; [ "$ARCH" = tiny ] && BATCH=8
timeout "${HFGEN_TIMEOUT:-200}" python3 -m bench.hf_generate --model "$M" --device $DEVICE \
  --batch $BATCH --json "$OUT/hf_generate.json" > "$OUT/hf_generate.log" 2>&1
echo "bench.hf_generate rc=$?"; grep -A4 "^# bench.hf_generate" "$OUT/hf_generate.log" || tail -20 "$OUT/hf_generate.log"
fi
if [[ " $BENCHES " == *" pipeline "* ]]; then
timeout 200 python3 -m bench.pipeline --model "$M" --prompts 32 --samples 4 --max-tokens 128 \
  "${SET[@]}" --json "$OUT/pipeline.json" > "$OUT/pipeline.log" 2>&1
echo "bench.pipeline rc=$?"; grep -A12 "^bench.pipeline," "$OUT/pipeline.log" || tail -30 "$OUT/pipeline.log"
fi
if [[ " $BENCHES " == *" dpo "* ]]; then
timeout "${DPO_TIMEOUT:-260}" python3 -m bench.train_dpo --model "$M" $GPU --pairs 64 --batch-size 8 --repeats 1 ${DPO_ARGS:-} \
  --json "$OUT/dpo.json" > "$OUT/dpo.log" 2>&1
echo "bench.train_dpo rc=$?"; grep -A6 "^DPO benchmark" "$OUT/dpo.log" || tail -30 "$OUT/dpo.log"
fi
