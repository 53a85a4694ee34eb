#!/usr/bin/env bash
# The real small ordering study of the README ("A real small study"): multilingual-e5-small (model=me5_small), XNLI's
# dev pairs as the English intermediate task and their translations (or their premises, for masked-LM) as the
# multilingual stage, multilingual STS as the target; 5 orders x 2 multilingual variants x 3 seeds on the real files
# in ../shared/data. Two cells run at a time, each on one CPU thread (RUN.md gives the wall on a 2-core machine).
# Reruns skip finished cells. Then the tables and plots: results/real_study/.
# PAWS-X is not a target by default (TARGETS="sts pawsx" adds it): on this CPU budget it learns nothing. Every one of
# the 24 PAWS-X cells of the study published from 1fd7274 (320 training pairs) predicted one class, and in
# results/ranking_study an English PAWS-X stage of 1998 pairs x 2 epochs at 1e-4 stayed at its majority rate on 3 of
# 3 seeds: a table of such cells compares nothing.
#   scripts/real_study.sh                 (from the project root; DATA=/path/to/shared/data elsewhere)
#   SEEDS=1,2 scripts/real_study.sh       (some seeds now, the others later: a seed's cells need only that seed's
#                                          stages, so a study split by seed trains no stage twice)
set -euo pipefail
cd "$(dirname "$0")/.."

XORDER=${XORDER:-.venv/bin/xorder}
DATA=${DATA:-../shared/data}
OUT=${OUT:-results/real_study}
CACHE=${CACHE:-$HOME/.cache/xorder}
JOBS=${JOBS:-2}
SEEDS=${SEEDS:-1,2,3}
TARGETS=${TARGETS:-sts}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

started=$(date -u +%s)
for target in $TARGETS; do
  "$XORDER" run -m "experiment=real_study_$target" "data_root=$DATA" "results_dir=$OUT/records" "cache_dir=$CACHE" \
    "seed=$SEEDS" hydra/launcher=parallel "hydra.launcher.n_jobs=$JOBS"
done
finished=$(date -u +%s)
printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$SEEDS" "$JOBS" \
  "$(( (finished - started) / 60 ))" >> "$OUT/runs.tsv"
"$XORDER" report --results "$OUT/records" --out "$OUT"
# the same records, English-first against no intermediate training (the order-effect tables pair those two orders)
"$XORDER" report --results "$OUT/records" --out "$OUT/vs_none" --compare english_first,none
.venv/bin/python -c 'from xorder.pipeline.record_writer import installed_packages; print(installed_packages(), end="")' \
  > "$OUT/packages.txt"

{
  echo "# How these tables were made"
  echo
  echo "- command: \`scripts/real_study.sh\` (JOBS=$JOBS, TARGETS=$TARGETS), then \`xorder report --results $OUT/records --out $OUT\` and, against \`none\`, \`--out $OUT/vs_none --compare english_first,none\`"
  echo "- xorder commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- machine: $(nproc --all) CPU cores ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/Mem:/{print $2}') GiB, no GPU; one torch thread per cell"
  echo "- software: $(.venv/bin/python -c 'import platform, torch, transformers; print(f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")'); every installed package: packages.txt"
  echo "- wall time of the two grids, per invocation (finished UTC, commit, seeds, jobs, minutes; cells already finished are skipped on a rerun):"
  sed 's/^/  - /; s/\t/, /g' "$OUT/runs.tsv"
  echo "- $(.venv/bin/python - "$OUT/records" <<'PY'
import json, pathlib, sys
stages = {}
for path in pathlib.Path(sys.argv[1]).rglob("metrics.json"):
    for stage in json.loads(path.read_text())["stages"]:
        stages[stage["hash"]] = stages.get(stage["hash"], True) and stage["reused"]
reused = sum(stages.values())
print(f"stages: {len(stages)} distinct, {reused} of them taken from the stage cache as an earlier run left them "
      "(same hash: same configuration), the others trained by this run")
PY
)"
} > "$OUT/RUN.md"
echo "tables: $OUT/tables.md; how they were made: $OUT/RUN.md"
