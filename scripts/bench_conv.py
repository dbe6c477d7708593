r"""Where the U-Net train step's time goes against PyTorch: one 3x3 convolution, pass by pass.

Times the forward pass, the input gradient and the weight gradient of a stride-1 3x3 convolution at
the shapes of the main job's U-Net (batch 32; 28x28x32, the 64->32 decoder convolution, 14x14x64,
7x7x64), in JAX (:func:`kopaths.models.layers.convolution`, what the U-Net runs on CPU, each pass
jitted on its own) and in PyTorch (``conv2d`` and ``aten.convolution_backward`` with one output
each, NCHW as in torchcfm's U-Net, in a child process so that the two thread pools never compete),
timed in alternating blocks in this run, and prints PyTorch's time / JAX's for each pass (> 1: JAX
is faster)::

    python scripts/bench_conv.py            # needs the bench extra: pip install -e '.[bench]'

The train step (``scripts/bench_train_step.py``) is one forward and both gradients of every
layer, so this says which pass a gap in the step comes from.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from kopaths.models.layers import convolution

#: (label, batch, size, in channels, out channels)
SHAPES = [
    ("28x28, 32->32", 32, 28, 32, 32),
    ("28x28, 64->32", 32, 28, 64, 32),
    ("14x14, 64->64", 32, 14, 64, 64),
    ("7x7, 64->64", 32, 7, 64, 64),
]
PASSES = ("forward", "input grad", "weight grad")


def _seconds(fn, steps: int) -> float:
    time.sleep(0.2)  # let the other library's threads stop spinning first
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def jax_passes(batch: int, size: int, cin: int, cout: int) -> dict:
    """Warmed-up zero-argument callables for each pass, jitted separately (NHWC / HWIO)."""
    k = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(k[0], (batch, size, size, cin))
    w = jax.random.normal(k[1], (3, 3, cin, cout)) * 0.1
    ct = jax.random.normal(k[2], (batch, size, size, cout))

    def conv(x, w):
        return convolution(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

    forward = jax.jit(conv)
    input_grad = jax.jit(lambda x, w, ct: jax.vjp(lambda x: conv(x, w), x)[1](ct)[0])
    weight_grad = jax.jit(lambda x, w, ct: jax.vjp(lambda w: conv(x, w), w)[1](ct)[0])
    fns = {
        "forward": lambda: jax.block_until_ready(forward(x, w)),
        "input grad": lambda: jax.block_until_ready(input_grad(x, w, ct)),
        "weight grad": lambda: jax.block_until_ready(weight_grad(x, w, ct)),
    }
    for fn in fns.values():
        fn()
    return fns


def torch_passes(batch: int, size: int, cin: int, cout: int) -> dict:
    """The same passes in PyTorch (NCHW / OIHW), each computing only its own output."""
    import torch  # noqa: PLC0415

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    torch.set_grad_enabled(False)
    x, ct = torch.randn(batch, cin, size, size), torch.randn(batch, cout, size, size)
    w = torch.randn(cout, cin, 3, 3) * 0.1

    def backward(mask):
        return torch.ops.aten.convolution_backward(ct, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)

    fns = {
        "forward": lambda: torch.nn.functional.conv2d(x, w, padding=1),
        "input grad": lambda: backward([True, False, False]),
        "weight grad": lambda: backward([False, True, False]),
    }
    for fn in fns.values():
        fn()
    return fns


def _torch_worker(conn) -> None:
    """Child process: builds every shape's passes, then times ``(shape index, pass, steps)`` requests."""
    try:
        passes = [torch_passes(b, s, ci, co) for _, b, s, ci, co in SHAPES]
    except ImportError as e:
        conn.send(str(e))
        return
    conn.send(None)
    while (req := conn.recv()) is not None:
        i, name, steps = req
        conn.send(_seconds(passes[i][name], steps))


def main() -> None:
    """Prints each pass's milliseconds in JAX and PyTorch and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="calls per timed block")
    ap.add_argument("--repeats", type=int, default=5, help="timed blocks per pass (the median is reported)")
    args = ap.parse_args()
    print(f"3x3 convolution passes, backend {jax.default_backend()}, {os.cpu_count()} CPUs, "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    ctx = multiprocessing.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=_torch_worker, args=(child,), daemon=True)
    proc.start()
    error = conn.recv()
    if error is not None:
        print(f"  torch reference skipped ({error}); install it with: pip install -e '.[bench]'")
    mine = [jax_passes(b, s, ci, co) for _, b, s, ci, co in SHAPES]
    ratios = {p: [] for p in PASSES}
    for i, (label, *_) in enumerate(SHAPES):
        times = {(lib, p): [] for lib in ("jax", "torch") for p in PASSES}
        for _ in range(args.repeats):  # the two libraries alternate, so load from elsewhere hits both alike
            for p in PASSES:
                times["jax", p].append(_seconds(mine[i][p], args.steps))
                if error is None:
                    conn.send((i, p, args.steps))
                    times["torch", p].append(conn.recv())
        row = []
        for p in PASSES:
            ms = 1e3 * statistics.median(times["jax", p])
            cell = f"{p} {ms:6.2f} ms"
            if error is None:
                ref = 1e3 * statistics.median(times["torch", p])
                ratios[p].append(ref / ms)
                cell += f" (torch {ref:6.2f}, {ratios[p][-1]:4.2f}x)"
            row.append(cell)
        print(f"  {label:<14}: " + ";  ".join(row))
    if error is None:
        conn.send(None)
        geo = {p: float(np.exp(np.mean(np.log(r)))) for p, r in ratios.items()}
        print("  ratio (torch time / jax time, geometric mean over the shapes): "
              + ", ".join(f"{p} {g:.2f}x" for p, g in geo.items()))
    proc.join(timeout=60)


if __name__ == "__main__":
    main()
