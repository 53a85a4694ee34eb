#!/usr/bin/env bash
# A study grid on one machine: cells one after another, or two at a time with the parallel launcher.
# Finished cells are skipped when the grid is run again; stages shared by cells are trained once.
set -euo pipefail

GRID=(order=none,english_only,multilingual_only,english_first,multilingual_first task=mnli,qqp,squad,hellaswag
      target=pawsx seed=1,2,3 multilingual=mlm)

xorder prepare -m "${GRID[@]}"                             # fetch models and data (needs internet once)
xorder run -m "${GRID[@]}"                                 # one cell after another
# xorder run -m "${GRID[@]}" hydra/launcher=parallel hydra.launcher.n_jobs=2   # two cells at a time
xorder status -m "${GRID[@]}" || true  # exits 1 while cells are missing, 3 if any failed; done / running / failed / missing, cached stages
xorder report                                              # results/tables/
