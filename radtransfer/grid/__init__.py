"""Experiments over many fine-tuning runs: the comparison's machinery below ``protocol.run_grid`` (the paper as data,
the plan of runs, their execution and claims, progress, records and pairs) and the layer-wise search."""
