"""`xorder rank`: predict which intermediate tasks help a target before training any, from forward passes of the
study's encoder (README, "Rank before you train").

Modules, in the order the data flows: sample (a seeded sample of a split, read and tokenized by the pipeline's
data path, and the record of what was read) -> embed (mean-pooled sentence embeddings of the frozen encoder) ->
logme (LogME, checked against the reference implementation) -> methods (semb, logme, semb_multilingual) ->
command (the CLI, ranking.csv and ranking.json). files holds the names and columns the report reads."""


def main(args: list[str]) -> int:
    from xorder.rank.command import main as run

    return run(args)
