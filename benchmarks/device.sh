#!/usr/bin/env bash
# The ONE command for the GPU machine, after benchmarks/prepare_device.sh ran here:
#   device run: command "bash benchmarks/device.sh", carry [".bench", ".whl"], timeout_s 600
# Installs the carried wheels, prints versions and nvidia-smi, then runs the GPU benchmarks in
# order, each under its own time limit (about 5 minutes in all, 8 at the very most), and leaves
# in $OUT: device.log (everything printed), RESULTS-rows.md (the rows appended to
# benchmarks/RESULTS.md, to paste into it here), profile-bert.txt and logs.tar.gz (each runner's
# log, metrics.json, log.jsonl and bench.json).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/bench-out}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
py=python3
work=/tmp/bench

BUDGET=${BUDGET:-540}  # seconds for everything: a stage gets at most what is left of it
STAGES=${STAGES:-bench}  # bench (the speed comparisons), smoke (benchmarks/smoke.py), or both: smoke,bench

stage() {  # stage NAME SECONDS COMMAND...: run it under its limit; a failure does not stop the rest
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  (( limit > BUDGET - SECONDS - 10 )) && limit=$((BUDGET - SECONDS - 10))
  (( limit < 20 )) && { echo "=== $name: skipped, ${limit}s left"; return; }
  echo; echo "=== $name (limit ${limit}s): $*"
  timeout -k 10 "$limit" "$@"
  echo "=== $name: exit $? after $((SECONDS - start))s (total ${SECONDS}s)"
}

install() {  # the carried wheels into .site; datasets 5 needs pyarrow >= 24, else the datasets 4 wheel
  local old_arrow wheels=() wheel
  old_arrow=$($py -c 'import pyarrow; print(int(int(pyarrow.__version__.split(".")[0]) < 24))') || return 1
  for wheel in .whl/*.whl; do
    [[ $old_arrow == 1 && $wheel == .whl/datasets-* ]] || wheels+=("$wheel")
  done
  [[ $old_arrow == 1 ]] && wheels+=(.whl/alt/datasets-*.whl)
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site "${wheels[@]}"
}

run_all() {
  install || { echo "installing the wheels failed"; return 1; }
  export PYTHONPATH=$PWD/.site:$PWD  # ftkit from this source tree (recipes/ too), no pip install
  $py -c "import sys, torch, transformers, accelerate, datasets, pyarrow, typer, tokenizers, huggingface_hub as h
print('python', sys.version.split()[0], '| torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__,
      '| accelerate', accelerate.__version__, '| datasets', datasets.__version__, '| pyarrow', pyarrow.__version__, '| typer', typer.__version__,
      '| tokenizers', tokenizers.__version__, '| huggingface_hub', h.__version__)" || return 1
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $py -m ftkit recipes list >/dev/null || { echo "python -m ftkit does not run here"; return 1; }
  local rows_before trained=() checkpoint=()
  rows_before=$(wc -l < benchmarks/RESULTS.md)

  if [[ ,$STAGES, == *,smoke,* ]]; then  # issue 6/7: every recipe in bf16, LoRA, one-process FSDP (~4 min)
    stage smoke 300 $py benchmarks/smoke.py --precision bf16 --work $work/smoke
  fi
  [[ ,$STAGES, == *,bench,* ]] || { echo "done in ${SECONDS}s"; return 0; }
  stage bert-train 140 $py benchmarks/train.py --arch bert-base-uncased --steps 300 --precision bf16 --work $work/bert
  # predict with the ftkit run just trained (its labels have margins), else with random weights
  [[ -f $work/bert/ftkit/model/config.json ]] && trained=(--model $work/bert/ftkit)
  stage bert-predict 80 $py benchmarks/predict.py --arch bert-base-uncased --n 4000 --batch-size 32 "${trained[@]}" --work $work/predict
  # the training step under torch.compile: CUDA graphs (reduce-overhead), then plain inductor
  stage bert-train-compiled 200 $py benchmarks/train.py --arch bert-base-uncased --steps 300 --precision bf16 --which ftkit-graphs,ftkit-compile,trainer-dynamic --model $work/bert/checkpoint --work $work/bert-compiled
  stage t5-train 90 $py benchmarks/train.py --arch t5-small --steps 100 --precision bf16 --max-eval-samples 64 --work $work/t5
  stage gpt2-train 90 $py benchmarks/train.py --arch gpt2 --steps 60 --precision bf16 --work $work/gpt2
  [[ -f $work/bert/checkpoint/config.json ]] && checkpoint=(--model $work/bert/checkpoint)
  stage profile 70 $py benchmarks/profile_loop.py --arch bert-base-uncased --steps 60 --precision bf16 "${checkpoint[@]}" --report "$OUT/profile-bert.txt"

  tail -n +$((rows_before + 1)) benchmarks/RESULTS.md > "$OUT/RESULTS-rows.md"
  (cd $work && find . \( -name '*.log' -o -name metrics.json -o -name log.jsonl -o -name bench.json \) -print0 | tar czf "$OUT/logs.tar.gz" --null -T -)
  echo; echo "done in ${SECONDS}s; new RESULTS.md rows:"; cat "$OUT/RESULTS-rows.md"
}

run_all 2>&1 | tee "$OUT/device.log"
