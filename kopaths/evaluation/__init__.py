"""Evaluating trained runs.

* :mod:`kopaths.evaluation.runs` — the checkpoint loader: a run as a velocity function and its schedule.
* :mod:`kopaths.evaluation.scoring` — samples, NFE, KE, bits/dim and distances of checkpoints, as JSON.
* :mod:`kopaths.evaluation.along_paths` — one model sampled along several paths.
* :mod:`kopaths.evaluation.distances` — Fréchet distance, sliced Wasserstein, MMD.
* :mod:`kopaths.evaluation.classifier` — the project's small CNN, whose features give
  "FD (classifier features, not comparable to published FID)".
* :mod:`kopaths.evaluation.inception` — TF-FID InceptionV3 in Flax (converted weights).
* :mod:`kopaths.evaluation.intervals` — seed intervals and paired differences.
"""
