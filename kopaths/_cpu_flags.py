r"""XLA:CPU defaults that kopaths sets before JAX starts its CPU backend.

JAX 0.10's XLA:CPU sends convolutions to YNNPACK by default; on the 2-core AMD EPYC (Zen 4) this
project is developed on, XLA's older Eigen convolution is 1.5-1.8x faster forward and backward at
the U-Net's shapes, and the U-Net train step 1.3-1.4x faster (``scripts/bench_train_step.py``
measures both settings in one run). Same float32 arithmetic, so the same results to rounding.

:func:`apply` appends ``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`` to
``XLA_FLAGS`` unless that flag is already there (your own value wins), ``KOPATHS_XLA_DEFAULTS=0``
is set, or JAX's backends are already running (XLA reads its flags once, at start-up). The flag
only concerns XLA:CPU; GPU and TPU compilation ignore it.
"""

from __future__ import annotations

import os

__all__ = ["CPU_XLA_FLAGS", "apply"]

CPU_XLA_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)


def apply() -> list[str]:
    """Adds :data:`CPU_XLA_FLAGS` to ``XLA_FLAGS`` where allowed; returns the flags it added."""
    if os.environ.get("KOPATHS_XLA_DEFAULTS", "1") == "0":
        return []
    try:
        from jax._src import xla_bridge  # noqa: PLC0415

        if xla_bridge.backends_are_initialized():
            return []
    except (ImportError, AttributeError):
        pass
    current = os.environ.get("XLA_FLAGS", "")
    added = [f for f in CPU_XLA_FLAGS if f.split("=")[0] not in current]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
