r"""U-Net flow-matching train-step throughput: kopaths (JAX/Flax) vs PyTorch + torchcfm.

Both sides run the same ADM U-Net (guided-diffusion layout; equal parameter counts are checked),
the same Cond-OT flow-matching loss, Adam, global-norm clipping and an EMA update, at the same
batch, on this machine's CPU (or whatever JAX's default backend is), measured in this run::

    python scripts/bench_train_step.py                # ~1.7M params, batch 64, 28x28x1
    python scripts/bench_train_step.py --steps 50 --batch 128

On CPU, ``XLA_FLAGS=--xla_cpu_experimental_onednn_custom_call=true`` routes XLA's convolutions
and matmuls to oneDNN (the library PyTorch uses) and speeds the JAX step up by about 1.5x.
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

from kopaths.models import build_model, count_params
from kopaths.training.trainer import make_train_step
from kopaths.training.optim import make_optimizer
from kopaths.training.state import init_train_state
from kopaths.schedules import CondOTSchedule


def _model_cfg(args) -> dict:
    return dict(name="unet", model_channels=args.channels, channel_mult=tuple(args.channel_mult),
                num_res_blocks=args.num_res_blocks, attention_resolutions=(2,), num_heads=4, dropout=0.0,
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
                      channel_mult=tuple(args.channel_mult), attention_resolutions=str(args.size // 2), num_heads=4,
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


def _torch_worker(args, conn) -> None:
    """Child process: builds the torch step, then times ``n`` steps per request until told to stop."""
    ref = setup_torch(args)
    conn.send(None if ref is None else ref[1])
    if ref is None:
        return
    while (n := conn.recv()) is not None:
        conn.send(_time(ref[0], n))


class TorchReference:
    """The PyTorch step in its own process, so that its OpenMP threads and XLA's thread pools
    never compete inside one process; the parent still interleaves the timed blocks."""

    def __init__(self, args):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_torch_worker, args=(args, child), daemon=True)
        self._proc.start()
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
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--channel-mult", type=int, nargs="+", default=[1, 2, 2])
    ap.add_argument("--num-res-blocks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="steps per timed block")
    ap.add_argument("--repeats", type=int, default=3, help="timed blocks (the median is reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    args = ap.parse_args()
    print(f"U-Net train step, batch {args.batch}, {args.size}x{args.size}x1, backend {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}), {os.cpu_count()} CPUs, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    ref = None if args.no_torch else TorchReference(args)
    if ref is not None and ref.n_params is None:
        ref.close()
        ref = None
    jax_run, jax_n = setup_jax(args)
    # Timed blocks alternate between the two so that load from other processes hits both alike.
    jax_times, torch_times = [], []
    for _ in range(args.repeats):
        jax_times.append(_time(jax_run, args.steps))
        if ref is not None:
            torch_times.append(ref.time(args.steps))
    if ref is not None:
        ref.close()
    jax_s = statistics.median(jax_times)
    print(f"  jax   : {jax_n:,} params, {1e3 * jax_s:8.1f} ms/step, {1 / jax_s:6.2f} steps/s, "
          f"{args.batch / jax_s:7.1f} images/s")
    if ref is None:
        return
    torch_s, torch_n = statistics.median(torch_times), ref.n_params
    print(f"  torch : {torch_n:,} params, {1e3 * torch_s:8.1f} ms/step, {1 / torch_s:6.2f} steps/s, "
          f"{args.batch / torch_s:7.1f} images/s")
    if torch_n != jax_n:
        print(f"  WARNING: parameter counts differ ({jax_n} vs {torch_n}).")
    print(f"  ratio (jax throughput / torch throughput): {torch_s / jax_s:.2f}x")


if __name__ == "__main__":
    main()
