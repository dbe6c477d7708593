r"""Benchmark: kopaths (JAX/diffrax) vs Meta's ``flow_matching`` ODESolver (torchdiffeq).

Both solve the same analytic velocity field — the exact marginal field of a Cond-OT path
(sigma_min = 0.05) over a fixed 2-D Gaussian-mixture dataset of ``--num-centres`` points,

.. math::  u_t(x) = \dot\alpha_t\hat x_1 + \dot\sigma_t (x - \alpha_t\hat x_1)/\sigma_t,\quad
           \hat x_1 = \mathrm{softmax}_j\big((\alpha_t\langle x, x^j\rangle
           - \alpha_t^2\|x^j\|^2/2)/\sigma_t^2\big)^\top X,

with dopri5 at the same rtol/atol, from the same noise, and the results are compared.
Sampling: noise -> data for ``--batch`` points. Likelihood: data -> noise with the exact
divergence for ``--lik-batch`` points. Wall times are steady-state (after one warm-up / compile
run, whose time is printed separately), on whatever CPU/GPU JAX and torch see.

NFE semantics differ and both are printed: torchdiffeq integrates the whole batch as one ODE
(one step-size sequence, NFE per batch); kopaths solves each example with its own step sizes
(NFE per example, mean and max; the max is what a vmapped batch executes).

Run:  python scripts/bench_sampling.py [--batch 1000 --tol 1e-5]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from kopaths.ode import likelihood as L
from kopaths.ode import sampling as S
from kopaths.ode.energy import ideal_velocity
from kopaths.schedules import CondOTSchedule

SIGMA_MIN = 0.05


def make_centres(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 2)).astype(np.float32)
    return (c - c.mean(0)) / np.sqrt(np.mean(np.sum((c - c.mean(0)) ** 2, 1)) / 2)


def _timed(fn, repeats: int):
    t = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t)
    return out, first, float(np.median(times))


def bench_jax(centres, x0, x_lik, tol, repeats):
    vf = ideal_velocity(CondOTSchedule(sigma_min=SIGMA_MIN), jnp.asarray(centres))
    x0, x_lik = jnp.asarray(x0), jnp.asarray(x_lik)
    res, c_s, t_s = _timed(lambda: S.sample_adaptive(vf, x0, method="dopri5", rtol=tol, atol=tol), repeats)
    lik, c_l, t_l = _timed(lambda: L.log_prob(vf, x_lik, method="dopri5", rtol=tol, atol=tol), repeats)
    return {
        "samples": np.asarray(res.x),
        "sample_time_s": t_s,
        "sample_first_call_s": c_s,
        "sample_nfe_mean": float(jnp.mean(res.nfe)),
        "sample_nfe_max": int(res.nfe_max),
        "log_prob": np.asarray(lik.log_prob),
        "lik_time_s": t_l,
        "lik_first_call_s": c_l,
        "lik_nfe_mean": float(jnp.mean(lik.nfe)),
        "lik_nfe_max": int(jnp.max(lik.nfe)),
    }


def bench_torch(centres, x0, x_lik, tol, repeats):
    import torch
    from flow_matching.solver import ODESolver
    from flow_matching.utils import ModelWrapper

    torch.set_num_threads(max(1, torch.get_num_threads()))
    xc = torch.as_tensor(centres, dtype=torch.float32)
    sq = (xc * xc).sum(-1)

    class IdealField(ModelWrapper):
        def __init__(self):
            super().__init__(torch.nn.Identity())
            self.calls = 0

        def forward(self, x, t, **extras):
            self.calls += 1
            t = t.reshape(())
            a, s, da, ds = t, 1 - (1 - SIGMA_MIN) * t, torch.ones_like(t), -(1 - SIGMA_MIN) * torch.ones_like(t)
            logits = (a * x @ xc.T - 0.5 * a * a * sq) / s**2
            x1 = torch.softmax(logits, -1) @ xc
            return da * x1 + ds * (x - a * x1) / s

    field = IdealField()
    solver = ODESolver(velocity_model=field)
    x0_t, xl_t = torch.as_tensor(np.asarray(x0)), torch.as_tensor(np.asarray(x_lik))

    def run_sample():
        field.calls = 0
        out = solver.sample(x_init=x0_t, step_size=None, method="dopri5", atol=tol, rtol=tol)
        return out, field.calls

    def log_p0(x):
        return -0.5 * (x**2).sum(-1) - x.shape[-1] * 0.5 * np.log(2 * np.pi)

    def run_lik():
        field.calls = 0
        _, lp = solver.compute_likelihood(
            x_1=xl_t, log_p0=log_p0, step_size=None, method="dopri5", atol=tol, rtol=tol, exact_divergence=True
        )
        return lp, field.calls

    def timed(fn):
        t = time.perf_counter()
        out = fn()
        first = time.perf_counter() - t
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return out, first, float(np.median(times))

    (samples, nfe_s), f_s, t_s = timed(run_sample)
    (lp, nfe_l), f_l, t_l = timed(run_lik)
    return {
        "samples": samples.detach().numpy(),
        "sample_time_s": t_s,
        "sample_first_call_s": f_s,
        "sample_nfe_batch": int(nfe_s),
        "log_prob": lp.detach().numpy(),
        "lik_time_s": t_l,
        "lik_first_call_s": f_l,
        "lik_nfe_batch": int(nfe_l),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--lik-batch", type=int, default=256)
    ap.add_argument("--num-centres", type=int, default=64)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=str, default=None, help="optional path to write the numbers")
    args = ap.parse_args()

    centres = make_centres(args.num_centres, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    x0 = rng.normal(size=(args.batch, 2)).astype(np.float32)
    idx = rng.integers(0, args.num_centres, size=args.lik_batch)
    x_lik = (centres[idx] + SIGMA_MIN * rng.normal(size=(args.lik_batch, 2))).astype(np.float32)

    print(f"devices: jax={jax.devices()}  field: ideal Cond-OT (sigma_min={SIGMA_MIN}) over {args.num_centres} 2-D points")
    print(f"dopri5 rtol=atol={args.tol}; sampling batch {args.batch}; likelihood batch {args.lik_batch} (exact divergence)")
    ours = bench_jax(centres, x0, x_lik, args.tol, args.repeats)
    print(
        f"kopaths  sample: {ours['sample_time_s'] * 1e3:9.1f} ms (first call incl. compile {ours['sample_first_call_s']:.2f} s), "
        f"NFE per example mean {ours['sample_nfe_mean']:.1f} / max {ours['sample_nfe_max']}"
    )
    print(
        f"kopaths  loglik: {ours['lik_time_s'] * 1e3:9.1f} ms (first call incl. compile {ours['lik_first_call_s']:.2f} s), "
        f"NFE per example mean {ours['lik_nfe_mean']:.1f} / max {ours['lik_nfe_max']}"
    )
    record = {k: v for k, v in ours.items() if not isinstance(v, np.ndarray)}
    record = {"kopaths": record, "args": vars(args)}
    try:
        ref = bench_torch(centres, x0, x_lik, args.tol, args.repeats)
    except ImportError as e:
        print(f"reference skipped: flow_matching/torch not installed ({e}); pip install 'kopaths[bench]'")
    else:
        print(
            f"meta fm  sample: {ref['sample_time_s'] * 1e3:9.1f} ms, NFE per batch {ref['sample_nfe_batch']}"
        )
        print(f"meta fm  loglik: {ref['lik_time_s'] * 1e3:9.1f} ms, NFE per batch {ref['lik_nfe_batch']}")
        ds = float(np.max(np.abs(ref["samples"] - ours["samples"])))
        dl = float(np.max(np.abs(ref["log_prob"] - ours["log_prob"])))
        print(f"agreement: max |samples diff| {ds:.2e}, max |log-prob diff| {dl:.2e} nats")
        print(
            f"ratio (meta / kopaths wall time): sampling {ref['sample_time_s'] / ours['sample_time_s']:.2f}x, "
            f"likelihood {ref['lik_time_s'] / ours['lik_time_s']:.2f}x"
        )
        record["meta_flow_matching"] = {k: v for k, v in ref.items() if not isinstance(v, np.ndarray)}
        record["max_abs_sample_diff"], record["max_abs_logprob_diff"] = ds, dl
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main()
