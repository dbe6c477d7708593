r"""U-Net Hutchinson likelihood: cost of one field evaluation inside the dopri5 solve, as a ratio.

The reference is measured in the same run: one jitted forward pass plus one vector-Jacobian
product of the same U-Net at the same batch, outside any loop (what a Hutchinson divergence with
one probe costs). Inside the solve, XLA:CPU's own layout for the input-gradient convolutions is
4-5x slower than outside a loop; :func:`kopaths.models.layers.convolution` (the U-Net's default)
computes that gradient as a plain convolution with a materialised flipped kernel. Both variants
are timed, on the main job's U-Net by default, with the same noisy parameters and data::

    python scripts/bench_likelihood.py [--batch 16]

Prints, per variant, milliseconds per field evaluation inside ``kopaths.ode.likelihood.log_prob``
(wall / max NFE over the batch, since a vmapped solve runs its longest example), the ratio to the
reference, and the speed-up of kopaths' convolution over XLA's.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from jax import lax

import kopaths.models.unet as unet_module
from kopaths.models import build_model, count_params
from kopaths.ode.likelihood import log_prob


def _best_ms(fn, repeats: int) -> float:
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def measure(args, x, probe) -> dict[str, float]:
    """Reference fwd+VJP and in-solve per-evaluation milliseconds of the U-Net as now configured."""
    model = build_model(dict(name="unet", model_channels=args.channels, channel_mult=(1, 2, 2),
                             num_res_blocks=args.num_res_blocks, attention_resolutions=(args.attention_ds,),
                             num_heads=4, dropout=0.0, use_scale_shift_norm=True))
    params = model.init(jax.random.key(0), x[:1], jnp.zeros((1,)))["params"]
    # Zero-initialised output layers would make the field (and its divergence) identically zero.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [p + 0.02 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])

    def velocity(t, z):
        return model.apply({"params": params}, z, jnp.broadcast_to(jnp.asarray(t, z.dtype), (z.shape[0],)))

    @jax.jit
    def fwd_vjp(z, e):
        value, pullback = jax.vjp(lambda y: velocity(0.5, y), z)
        return value, pullback(e)[0]

    solve = jax.jit(lambda z: log_prob(velocity, z, divergence="hutchinson", key=jax.random.key(2), num_probes=1,
                                       rtol=args.tol, atol=args.tol))
    start = time.perf_counter()
    result = jax.block_until_ready(solve(x))
    compile_s = time.perf_counter() - start
    nfe = int(jnp.max(result.nfe))
    solve_ms = _best_ms(lambda: solve(x), args.repeats)
    return dict(params=count_params(params), reference_ms=_best_ms(lambda: fwd_vjp(x, probe), 3 * args.repeats),
                per_eval_ms=solve_ms / nfe, nfe=nfe, compile_s=compile_s,
                log_prob=float(jnp.mean(result.log_prob)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--num-res-blocks", type=int, default=1)
    ap.add_argument("--attention-ds", type=int, default=4, help="downsampling factor with attention")
    ap.add_argument("--tol", type=float, default=1e-3, help="dopri5 rtol = atol")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    x = jax.random.normal(jax.random.key(3), (args.batch, args.size, args.size, 1))
    probe = jax.random.normal(jax.random.key(4), x.shape)
    print(f"backend {jax.default_backend()}, batch {args.batch}, dopri5 at {args.tol}")
    results = {"kopaths": measure(args, x, probe)}
    unet_module.convolution = lambda *a, **k: lax.conv_general_dilated(*a, **k)  # XLA's own input gradient
    results["xla"] = measure(args, x, probe)
    for name, r in results.items():
        print(f"  {name:8s} {r['params']} params: fwd+VJP outside a loop {r['reference_ms']:.0f} ms; inside the solve "
              f"{r['per_eval_ms']:.0f} ms per evaluation ({r['nfe']} NFE, compile {r['compile_s']:.0f} s) = "
              f"{r['per_eval_ms'] / r['reference_ms']:.2f}x the reference; mean log p {r['log_prob']:.3f}")
    print(f"speed-up of kopaths' convolution inside the solve: "
          f"{results['xla']['per_eval_ms'] / results['kopaths']['per_eval_ms']:.2f}x")


if __name__ == "__main__":
    main()
