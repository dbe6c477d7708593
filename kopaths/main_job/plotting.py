"""Matplotlib figures shared by the pipeline and the experiments (Agg backend, PNG files)."""

from __future__ import annotations

import math
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kopaths.io import save_figure  # noqa: E402
from kopaths.lambda_fit import LambdaFit  # noqa: E402
from kopaths.schedules import Schedule  # noqa: E402
from kopaths.separation import LambdaEstimate  # noqa: E402

__all__ = [
    "plot_lambda", "plot_schedules", "plot_energies", "plot_sample_grids", "plot_nfe_quality", "plot_diagnostics",
    "plot_point_clouds",
]


def _save(fig, path: str) -> str:
    return save_figure(fig, path)


def plot_lambda(path: str, estimates: Mapping[str, tuple[LambdaEstimate | None, LambdaFit]]) -> str:
    r"""Plots :math:`\hat\lambda(\theta)` (points with 2-sigma bars, and the fit) and :math:`\gamma(\theta)`."""
    fig, (ax_l, ax_g) = plt.subplots(1, 2, figsize=(10, 4))
    theta = np.linspace(0.0, 0.5 * math.pi, 400)
    ax_l.plot(theta, np.sin(theta) ** 2, "k:", label="Gaussian  s²/(1+s²)")
    for name, (est, fit) in estimates.items():
        (line,) = ax_l.plot(theta, np.asarray(fit(jnp.tan(jnp.asarray(theta[:-1])))).tolist() + [1.0], label=name)
        if est is not None:
            th = np.arctan(est.snr)
            ax_l.errorbar(th, est.lam, yerr=2 * est.stderr, fmt=".", ms=2, color=line.get_color(), alpha=0.5)
        ax_g.plot(theta, np.asarray(fit.gamma(jnp.asarray(theta))), color=line.get_color(), label=name)
    ax_l.set(xlabel=r"$\theta = \arctan s$", ylabel=r"$\lambda$", title="data separation function")
    ax_g.set(xlabel=r"$\theta$", ylabel=r"$\gamma(\theta)$", title="metric weight  γ = 1 − (1−λ)/cos²θ")
    ax_l.legend(fontsize=8)
    return _save(fig, path)


def plot_schedules(path: str, schedules: Mapping[str, Schedule]) -> str:
    r"""Plots :math:`\alpha_t` and :math:`\sigma_t` of several schedules."""
    fig, (ax_a, ax_s) = plt.subplots(1, 2, figsize=(10, 4))
    t = jnp.linspace(0.0, 1.0, 401)
    for name, schedule in schedules.items():
        out = schedule(t)
        ax_a.plot(t, out.alpha, label=name)
        ax_s.plot(t, out.sigma, label=name)
    ax_a.set(xlabel="t", ylabel=r"$\alpha_t$", title="signal coefficient")
    ax_s.set(xlabel="t", ylabel=r"$\sigma_t$", title="noise coefficient")
    ax_a.legend(fontsize=8)
    return _save(fig, path)


def plot_energies(path: str, energies: Mapping[str, float], *, title: str = "kinetic energy per dimension") -> str:
    """Bar chart of kinetic energies."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(energies)
    values = [energies[n] for n in names]
    bars = ax.bar(names, values, color=[f"C{i}" for i in range(len(names))])
    ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set(ylabel="KE", title=title)
    return _save(fig, path)


def plot_sample_grids(path: str, grids: Mapping[str, np.ndarray], *, columns: int = 8) -> str:
    """Shows uint8 NHWC sample batches side by side, one panel per name."""
    fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids), 4.4), squeeze=False)
    for ax, (name, images) in zip(axes[0], grids.items()):
        images = np.asarray(images)[: columns * columns]
        n, h, w, c = images.shape
        rows = -(-n // columns)
        canvas = np.zeros((rows * h, columns * w, c), np.uint8)
        for i, img in enumerate(images):
            r, q = divmod(i, columns)
            canvas[r * h : (r + 1) * h, q * w : (q + 1) * w] = img
        ax.imshow(canvas.squeeze(-1) if c == 1 else canvas, cmap="gray" if c == 1 else None)
        ax.set_title(name)
        ax.axis("off")
    return _save(fig, path)


def plot_nfe_quality(path: str, curves: Mapping[str, tuple[list[int], list[float]]], adaptive: Mapping[str, tuple[float, float]],
                     *, ylabel: str) -> str:
    """Quality against NFE: fixed-step Euler curves and one adaptive-solver point per name."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (name, (nfe, score)) in enumerate(curves.items()):
        ax.plot(nfe, score, "o-", color=f"C{i}", label=f"{name} (Euler)")
        if name in adaptive:
            ax.plot(*adaptive[name], "*", ms=12, color=f"C{i}", label=f"{name} (dopri5)")
    ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel=ylabel, title="sample quality against NFE")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_diagnostics(path: str, diagnostics: Mapping[str, "ScheduleDiagnostics"], weights: Mapping[str, tuple] | None = None) -> str:
    r"""Per-t curves of :class:`kopaths.diagnostics.ScheduleDiagnostics` on a log-t axis, one line per path:
    the marginal :math:`\mathbb E\|u_t\|^2/d`, the conditional :math:`\dot\alpha^2+\dot\sigma^2` and the
    irreducible FM loss density; optionally the loss weight per log-snr, ``weights[name] = (log_snr, p * W)``."""
    panels = 4 if weights else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.8))
    for i, (name, d) in enumerate(diagnostics.items()):
        t = np.asarray(d.t)
        keep = t > 0
        for ax, values in zip(axes, (d.marginal, d.conditional, d.irreducible)):
            ax.plot(t[keep], np.asarray(values)[keep], color=f"C{i}", label=f"{name} (max speed {d.max_speed:.3g})")
    titles = (r"marginal $\mathbb{E}\|u_t\|^2/d$", r"conditional $\dot\alpha^2+\dot\sigma^2$",
              "irreducible FM loss per t")
    for ax, title in zip(axes, titles):
        ax.set(xscale="log", yscale="log", xlabel="t", title=title)
    axes[0].legend(fontsize=7)
    if weights:
        ax = axes[-1]
        for i, (name, (ell, w)) in enumerate(weights.items()):
            ax.plot(ell, w, color=f"C{i}", label=name)
        ax.set(yscale="log", xlabel=r"log-snr $\ell$", title=r"loss weight per log-snr $p(\ell)W(\ell)$")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_point_clouds(path: str, clouds: Mapping[str, Mapping[int, np.ndarray]], reference: np.ndarray) -> str:
    """2-D samples: one row per name, one panel per NFE, and the reference points in the last column."""
    names = list(clouds)
    nfes = list(next(iter(clouds.values())))
    fig, axes = plt.subplots(len(names), len(nfes) + 1, figsize=(2.6 * (len(nfes) + 1), 2.6 * len(names)), squeeze=False)
    lim = float(np.abs(reference).max()) * 1.1
    for i, name in enumerate(names):
        panels = [(f"{name}, NFE={n}", clouds[name][n], "k") for n in nfes] + [("held-out data", reference, "tab:blue")]
        for ax, (title, points, color) in zip(axes[i], panels):
            ax.scatter(points[:, 0], points[:, 1], s=0.5, alpha=0.5, color=color, rasterized=True)
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xticks=[], yticks=[])
            ax.set_title(title, fontsize=8)
    return _save(fig, path)
