"""What `xorder rank` writes and `xorder report` reads: file names, the columns of ranking.csv, and which order's
cells realise what each method predicts. Only constants: the report imports it without the ranking's dependencies."""

from __future__ import annotations

FOLDER = "ranking"  # results_dir/ranking/<target>/<model>/
RANKING_CSV = "ranking.csv"
RANKING_JSON = "ranking.json"  # the record of what the ranking read: data digests, model, sample sizes, seed
COLUMNS = ["target", "model", "method", "multilingual", "task", "score", "rank", "examples", "seconds", "note"]
ENGLISH_METHODS = ("semb", "logme")  # rank the English intermediate task: realised by order=english_only
MULTILINGUAL_METHODS = ("semb_multilingual",)  # rank the multilingual stage's data: realised by multilingual_only
METHODS = (*ENGLISH_METHODS, *MULTILINGUAL_METHODS)
REALISED_BY = {**{m: "english_only" for m in ENGLISH_METHODS}, **{m: "multilingual_only" for m in MULTILINGUAL_METHODS}}
