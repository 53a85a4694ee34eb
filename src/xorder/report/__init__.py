"""Result tables: the study's answer, rebuilt from run records alone (`xorder report`, scripts/make_tables.py).

Reads every complete record (`metrics.json`) under a results directory, and `predictions.parquet` of the
english_first / multilingual_first cells for the paired tests; never logs. Writes into the output directory:

  summary.csv       tidy long form: one row per target x model x multilingual x order x tasks x selection x
                    split x language x metric, with n_seeds, mean and sample std over seeds (avg, avg_non_en
                    are computed per seed first, so their std is the seed-to-seed spread of the average)
  order_effect.csv  english_first - multilingual_first per task and language, 95% bootstrap CI, permutation p
  missing.csv       cells and seeds of the observed grid that have no complete record
  tables.md/.tex    main (mean ± std), delta vs `none`, order effect, robustness and selection tables
  plots/*.png       per-language bars with error bars per order, and a task x order heatmap of the average

The same records always give byte-identical files: rows are sorted, floats formatted at fixed precision,
random draws come from generators seeded by the name of what they test, and PNGs carry no timestamp.

Modules, in the order the data flows: load (records) -> grid (axes, sorting, missing cells) -> aggregate
(seeds) -> paired, effects (order effect) -> render, tables (Markdown, LaTeX) -> plots -> command (build, main).
"""

from xorder.report.command import build, main

__all__ = ["build", "main"]
