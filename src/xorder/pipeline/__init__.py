"""One cell's pipeline, under `run.run_cell`: each stage trained (`train`, `optim`, `batch_plan`) or
taken from the stage cache, the target evaluated and its checkpoint chosen (`evaluate`, `checkpoint`), and the
run record written (`record_writer`)."""
