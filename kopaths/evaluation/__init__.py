"""Evaluation helpers beyond :mod:`kopaths.metrics`.

* :mod:`kopaths.evaluation.classifier` — the project's small CNN whose features give
  "FD (classifier features, not comparable to published FID)".
"""
