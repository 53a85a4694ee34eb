"""Result tables: the study's answer, rebuilt from run records alone (`xorder report`, scripts/make_tables.py).

Reads every complete record (`metrics.json`) under a results directory, and `predictions.parquet` of the two
compared orders' cells for the paired tests; never logs. Writes into the output directory:

  summary.csv       tidy long form: one row per target x model x multilingual x order x tasks x selection x
                    split x language x metric, with n_seeds, mean and sample std over seeds (avg, avg_non_en
                    are computed per seed first, so their std is the seed-to-seed spread of the average)
  order_effect.csv  A - B (english_first - multilingual_first by default) per task and language, 95% bootstrap
                    CI, permutation p
  missing.csv       cells and seeds of the observed grid that have no complete record
  compute.csv       device hours of the trained stages, and the hours the missing cells would take
  tables.md/.tex    main (mean ± std), delta vs `none`, order effect, robustness, selection, training budget
                    and compute tables, with the records' notes
  ranking_check.csv where the results hold a ranking (`xorder rank`): per target, model, method and split, Spearman
                    of its scores with the realised gains over `none`, Regret@1 and Regret@3 (report/ranking.py)
  references.bib    BibTeX of xorder, the reference study and the records' datasets
  plots/*.png|pdf   per-language bars with error bars per order, and a task x order heatmap of avg_non_en

The same records always give byte-identical files: rows are sorted, floats formatted at fixed precision,
random draws come from generators seeded by the name of what they test, and plots carry no timestamp.

Modules, in the order the data flows: catalog (packaged task files), load (records) -> grid (axes, sorting,
missing cells) -> aggregate (seeds) -> paired, effects (order effect) -> names, render, tables, compute
(Markdown, LaTeX) -> plots -> cite -> ranking (the check of `xorder rank`) -> command (build, main).
"""

from xorder.report.command import build, main

__all__ = ["build", "main"]
