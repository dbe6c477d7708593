r"""U-Net flow-matching train-step throughput: kopaths (JAX/Flax) vs PyTorch + torchcfm.

Both sides run the same ADM U-Net (guided-diffusion layout; equal parameter counts are checked),
the same Cond-OT flow-matching loss, Adam, global-norm clipping and an EMA update, at the same
batch, on this machine's CPU (or whatever JAX's default backend is), measured in this run::

    python scripts/bench_train_step.py --batch 32 --xla-default   # ~1.7M params, 28x28x1
    python scripts/bench_train_step.py --batch 64 --xla-default

``--xla-default`` also times the JAX step without kopaths' XLA:CPU flags (:mod:`kopaths._cpu_flags`:
Eigen instead of YNNPACK convolutions), in a child process started with XLA's own defaults.
The reference needs the ``bench`` extra (``pip install -e '.[bench]'``, CPU torch 2.13.0).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kopaths import _cpu_flags
from kopaths.models import build_model, count_params
from kopaths.training.trainer import make_train_step
from kopaths.training.optim import make_optimizer
from kopaths.training.state import init_train_state
from kopaths.schedules import CondOTSchedule


def _model_cfg(args) -> dict:
    return dict(name="unet", model_channels=args.channels, channel_mult=tuple(args.channel_mult),
                num_res_blocks=args.num_res_blocks, attention_resolutions=(args.attention_ds,), num_heads=4, dropout=0.0,
                use_scale_shift_norm=True)


def _time(run, n: int) -> float:
    """Seconds per step over one block of ``n`` steps."""
    start = time.perf_counter()
    run(n)
    return (time.perf_counter() - start) / n


def setup_jax(args):
    """Compiled, warmed-up ``run(n)`` for the JAX train step, and the parameter count."""
    config = ml_collections.ConfigDict(dict(
        time_sampling=dict(name="uniform"),
        optim=dict(name="adam", lr=1e-4, warmup_steps=0, decay="constant", grad_clip_norm=1.0, ema_decay=0.9999),
    ))
    model = build_model(_model_cfg(args))
    tx, lr_fn = make_optimizer(config.optim, 1000)
    x = jnp.zeros((1, args.size, args.size, 1))
    state = jax.jit(lambda k: init_train_state(model, tx, x, k))(jax.random.key(0))
    n_params = count_params(state.params)
    step_fn = jax.jit(make_train_step(model, CondOTSchedule(), tx, lr_fn, config, jax.random.key(1)), donate_argnums=0)
    batch = {"x": jax.random.normal(jax.random.key(2), (args.batch, args.size, args.size, 1))}
    holder = [state]

    def run(n):
        s = holder[0]
        for _ in range(n):
            s, metrics = step_fn(s, batch)
        jax.block_until_ready(metrics["loss"])
        holder[0] = s

    t0 = time.perf_counter()
    run(1)
    print(f"  jax: compile + first step {time.perf_counter() - t0:.1f} s")
    run(args.warmup)
    return run, n_params


def setup_torch(args):
    """Warmed-up ``run(n)`` for the PyTorch train step and its parameter count (None without torch)."""
    try:
        import torch
        from torchcfm.models.unet import UNetModel
    except ImportError as e:
        print(f"  torch reference skipped ({e}); install it with: pip install -e '.[bench]' "
              "(CPU torch 2.13.0, torchcfm; or pip install torch==2.13.0 && pip install --no-deps torchcfm POT)")
        return None
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    model = UNetModel(dim=(1, args.size, args.size), num_channels=args.channels, num_res_blocks=args.num_res_blocks,
                      channel_mult=tuple(args.channel_mult), attention_resolutions=str(args.size // args.attention_ds), num_heads=4,
                      use_scale_shift_norm=True, dropout=0.0)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    ema = [p.detach().clone() for p in model.parameters()]
    x1 = torch.randn(args.batch, 1, args.size, args.size)

    def one_step():
        t = torch.rand(args.batch)
        x0 = torch.randn_like(x1)
        tb = t[:, None, None, None]
        xt, ut = tb * x1 + (1 - tb) * x0, x1 - x0
        loss = torch.mean((model(t, xt) - ut) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, list(model.parameters()), 1 - 0.9999)
        return loss

    def run(n):
        for _ in range(n):
            loss = one_step()
        loss.item()

    run(1 + args.warmup)
    return run, n_params


def _worker(kind: str, args, conn) -> None:
    """Child process: builds the ``kind`` step, then times ``n`` steps per request until told to stop."""
    ref = setup_torch(args) if kind == "torch" else setup_jax(args)
    conn.send(None if ref is None else ref[1])
    if ref is None:
        return
    while (n := conn.recv()) is not None:
        conn.send(_time(ref[0], n))


class ChildStep:
    """A train step in its own process: ``torch`` (its OpenMP threads and XLA's thread pools never
    compete inside one process), or ``jax_xla_default`` (the JAX step with XLA's own CPU defaults,
    which must be chosen before JAX starts). The parent still interleaves the timed blocks."""

    def __init__(self, kind: str, args):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_worker, args=(kind, args, child), daemon=True)
        saved = {k: os.environ.get(k) for k in ("XLA_FLAGS", "KOPATHS_XLA_DEFAULTS")}
        if kind == "jax_xla_default":
            os.environ["KOPATHS_XLA_DEFAULTS"] = "0"
            os.environ["XLA_FLAGS"] = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                                               if f not in _cpu_flags.CPU_XLA_FLAGS)
        try:
            self._proc.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.n_params = self._conn.recv()

    def time(self, n: int) -> float:
        """Seconds per step over ``n`` steps."""
        self._conn.send(n)
        return self._conn.recv()

    def close(self) -> None:
        """Stops the child."""
        if self.n_params is not None:
            self._conn.send(None)
        self._proc.join(timeout=60)


def main() -> None:
    """Runs both benchmarks and prints steps/s and the JAX / torch throughput ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--channel-mult", type=int, nargs="+", default=[1, 2, 2])
    ap.add_argument("--num-res-blocks", type=int, default=2)
    ap.add_argument("--attention-ds", type=int, default=2, help="downsampling factor with attention (main job: 4)")
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks (the median is reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    ap.add_argument("--xla-default", action="store_true",
                    help="also time the JAX step with XLA's own CPU defaults (without kopaths' flags)")
    args = ap.parse_args()
    print(f"U-Net train step, batch {args.batch}, {args.size}x{args.size}x1, backend {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}), {os.cpu_count()} CPUs, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    children = {}
    if args.xla_default:
        children["jax, XLA's CPU defaults"] = ChildStep("jax_xla_default", args)
    if not args.no_torch:
        children["torch"] = ChildStep("torch", args)
    for name in [k for k, c in children.items() if c.n_params is None]:
        children.pop(name).close()
    jax_run, jax_n = setup_jax(args)
    # Timed blocks alternate between the steps so that load from other processes hits all alike.
    times = {"jax": [], **{name: [] for name in children}}
    for _ in range(args.repeats):
        times["jax"].append(_time(jax_run, args.steps))
        for name, child in children.items():
            times[name].append(child.time(args.steps))
    for child in children.values():
        child.close()
    med = {name: statistics.median(ts) for name, ts in times.items()}
    counts = {"jax": jax_n, **{name: c.n_params for name, c in children.items()}}
    for name, sec in med.items():
        print(f"  {name:<24}: {counts[name]:,} params, {1e3 * sec:8.1f} ms/step, {1 / sec:6.2f} steps/s, "
              f"{args.batch / sec:7.1f} images/s")
    if any(n != jax_n for n in counts.values()):
        print(f"  WARNING: parameter counts differ ({counts}).")
    xla_name = "jax, XLA's CPU defaults"
    if xla_name in med:
        print(f"  kopaths' XLA:CPU flags ({' '.join(_cpu_flags.CPU_XLA_FLAGS)}) vs XLA's defaults: "
              f"{med[xla_name] / med['jax']:.2f}x faster")
    if "torch" in med:
        print(f"  ratio (jax throughput / torch throughput), batch {args.batch}: {med['torch'] / med['jax']:.2f}x")


if __name__ == "__main__":
    main()
