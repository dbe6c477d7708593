"""The main job (``kopaths run``): stages, the model stage, the report and its figures.

* :mod:`kopaths.main_job.stages` — lambda-hat, KO paths, energies and diagnostics; :func:`run_pipeline`.
* :mod:`kopaths.main_job.trained_models` — short training runs, each sampled along every trained path.
* :mod:`kopaths.main_job.report` — ``report.md``; :mod:`kopaths.main_job.plotting` — the figures
  (also used by the experiments).

Its configuration is ``experiments/configs/main_job.py``.
"""
