#!/usr/bin/env bash
# The ranking study (README, "Rank before you train"): `xorder rank` predicts which of four real intermediate
# tasks helps the STS target most, the grid then realises each of them (order=english_only against order=none, 3
# seeds, the real small STS study's settings, model=me5_small), and `xorder report` checks the prediction against
# the realised gains (Spearman, Regret@1/@3). The tasks, from ../shared/data, are small stand-ins (sizes in the
# README): XNLI's English dev pairs (xnli_dev, 1998 training pairs), PAWS-X's English dev pairs (pawsx_en, 1800),
# CommonsenseQA's dev questions (commonsenseqa_dev, 1021) and PAWS-X's German dev pairs (pawsx_de, 1800, trained in
# German: the data holds no fourth labelled English set); each stage trains on all of them (at most 1998), 2 epochs
# at 1e-4, as the real study's English stage. The grid is 15 distinct cells (the sweep's 24 share their `none`
# records), about 2 hours on a 2-core CPU with two cells at a time; reruns skip finished cells. The ranking alone
# took 207 s in the published run (one thread, cold tokenizer cache, the cores shared with the test suite).
#   scripts/ranking_study.sh                 (from the project root; DATA=/path/to/shared/data elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."

XORDER=${XORDER:-.venv/bin/xorder}
DATA=${DATA:-../shared/data}
OUT=${OUT:-results/ranking_study}
CACHE=${CACHE:-$HOME/.cache/xorder}
JOBS=${JOBS:-2}
STUDY=(-m --config-dir scripts/ranking_study/conf experiment=ranking_study_sts "data_root=$DATA" "cache_dir=$CACHE")
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

# 1. the prediction, before any training: results/ranking_study/records/ranking/sts/me5_small/ranking.csv
started=$(date -u +%s)
"$XORDER" rank "${STUDY[@]}" "results_dir=$OUT/records" --methods semb,logme --examples 1000
ranked=$(date -u +%s)

# 2. the grid that realises it
"$XORDER" run "${STUDY[@]}" "results_dir=$OUT/records" hydra/launcher=parallel "hydra.launcher.n_jobs=$JOBS"
finished=$(date -u +%s)

# 3. the tables, with the ranking check (tables.md, "Ranking check"; ranking_check.csv)
"$XORDER" report --results "$OUT/records" --out "$OUT"

{
  echo "# How these tables were made"
  echo
  echo "- command: \`scripts/ranking_study.sh\` (JOBS=$JOBS): \`xorder rank\`, the grid, then \`xorder report --results $OUT/records --out $OUT\`"
  echo "- xorder commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- machine: $(nproc --all) CPU cores ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), one torch thread per process"
  echo "- wall time: ranking $(( ranked - started )) s, grid $(( (finished - ranked) / 60 )) minutes (finished cells are skipped on a rerun)"
} > "$OUT/RUN.md"
echo "tables: $OUT/tables.md (section \"Ranking check\"); ranking: $OUT/records/ranking/sts/me5_small/ranking.csv"
