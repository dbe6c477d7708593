r"""Paper Figure 2: 2-D checkerboard, Cond-OT vs SI vs KO sampled with Euler at NFE 2/6/10/16.

Trains one MLP velocity model per path with the same budget and seed (the model, loss,
optimiser and EMA of ``experiments/configs/checkerboard_mlp.py`` / ``kopaths.train``'s step,
scaled down by the flags below, on in-memory batches), then from the same
noise draws Euler samples at each NFE and scores them against held-out checkerboard data:
sliced 2-Wasserstein (512 projections) and MMD² (Gaussian kernels, bandwidths 0.1-2) in the
normalised space, plus the exact NLL (dopri5 at 1e-5, exact 2x2 divergence) of held-out points
in nats/dim of the raw data. Writes ``samples.png`` and ``results.json`` under ``--out``.

Reproduce (2-core CPU, about 20 min)::

    python -m kopaths.data.prepare --dataset checkerboard   # once
    PYTHONPATH=. python experiments/checkerboard_nfe.py --steps 6000 --out experiments/results/checkerboard_nfe
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from kopaths import likelihood as L
from kopaths import metrics as M
from kopaths import sampling as S

PATHS = {"cond_ot": "Cond-OT", "cosine": "SI", "ko": "KO"}


def _load_config(path_name: str):
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("cb_cfg", os.path.join(here, "configs", "checkerboard_mlp.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(path_name)


def train_one(path_name: str, args, train_x: np.ndarray):
    """Trains with the trainer's own step (model, loss, optimiser, EMA) on in-memory batches.

    The checkerboard is held in memory (``load_array``) instead of going through the grain
    pipeline, which keeps a small CPU run fast; the update is ``kopaths.train.make_train_step``.
    Returns ``(velocity_fn, schedule, config)``.
    """
    from kopaths.evaluate import FlaxVelocity  # noqa: PLC0415
    from kopaths.models import build_model  # noqa: PLC0415
    from kopaths.train import make_train_step  # noqa: PLC0415
    from kopaths.training.optim import make_optimizer  # noqa: PLC0415
    from kopaths.training.schedule_setup import build_schedule  # noqa: PLC0415
    from kopaths.training.state import init_train_state  # noqa: PLC0415

    c = _load_config(path_name)
    c.total_steps = args.steps
    c.global_batch_size = args.batch
    c.model.hidden_sizes = tuple([args.width] * args.depth)
    c.optim.warmup_steps = min(500, args.steps // 10)
    c.optim.ema_decay = 0.999
    c.seed = args.seed
    model = build_model(c.model)
    tx, lr_fn = make_optimizer(c.optim, args.steps)
    root = jax.random.key(args.seed)
    state = init_train_state(model, tx, jnp.zeros((1, 2), jnp.float32), jax.random.fold_in(root, 0))
    workdir = os.path.join(args.workdir, path_name)  # holds the KO schedule / lambda-hat files
    schedule = build_schedule(c.path, workdir=workdir, data_cfg=c.data, seed=args.seed)
    step = jax.jit(make_train_step(model, schedule, tx, lr_fn, c, jax.random.fold_in(root, 1)), donate_argnums=(0,))
    rng = np.random.default_rng(args.seed)
    t = time.time()
    losses = []
    for i in range(args.steps):
        batch = {"x": jnp.asarray(train_x[rng.integers(0, len(train_x), args.batch)])}
        state, metrics = step(state, batch)
        if (i + 1) % max(1, args.steps // 10) == 0:
            losses.append(float(metrics["loss"]))
            print(f"[{path_name}] step {i + 1} loss {losses[-1]:.4f} ({time.time() - t:.0f}s)", flush=True)
    return FlaxVelocity(model, state.ema_params), schedule, c, {"train_seconds": time.time() - t, "loss_trace": losses}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="experiments/results/checkerboard_nfe")
    ap.add_argument("--workdir", default="/tmp/kopaths_checkerboard_nfe")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--num_samples", type=int, default=4000)
    ap.add_argument("--num_nll", type=int, default=1000)
    ap.add_argument("--num_train", type=int, default=262144)
    ap.add_argument("--nfe", default="2,6,10,16")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    nfes = [int(n) for n in args.nfe.split(",")]

    from kopaths.data import load_array  # noqa: PLC0415

    data_cfg = _load_config("cond_ot").data
    train_x, stats = load_array(data_cfg, split="train", max_examples=args.num_train)
    held, _ = load_array(data_cfg, split="test", max_examples=max(args.num_samples, args.num_nll))
    ref = jnp.asarray(held[: args.num_samples])

    results = {"command": "PYTHONPATH=. python " + " ".join(sys.argv), "args": vars(args), "devices": [str(d) for d in jax.devices()],
               "paths": {}}
    samples = {}
    for name in PATHS:
        velocity, _, _, train_info = train_one(name, args, train_x)
        x0 = jax.random.normal(jax.random.key(args.seed + 1), (args.num_samples, 2), jnp.float32)
        rec = {"train_steps": args.steps, **train_info}
        samples[name] = {}
        for nfe in nfes:
            x = S.sample_fixed(velocity, x0, method="euler", nfe=nfe).x
            samples[name][nfe] = np.asarray(stats.invert(np.asarray(x)))
            rec[f"euler_{nfe}"] = {
                "sliced_w2": float(M.sliced_wasserstein(x, ref, jax.random.key(7), 512)),
                "mmd_rbf": float(M.mmd_rbf(x[:2000], ref[:2000])),
            }
        ada = S.sample_adaptive(velocity, x0, rtol=1e-5, atol=1e-5)
        rec["dopri5_1e-5"] = {"nfe_mean": float(jnp.mean(ada.nfe)), "nfe_max": int(ada.nfe_max),
                              "sliced_w2": float(M.sliced_wasserstein(ada.x, ref, jax.random.key(7), 512)),
                              "mmd_rbf": float(M.mmd_rbf(ada.x[:2000], ref[:2000]))}
        lp = L.log_prob(velocity, jnp.asarray(held[: args.num_nll]), rtol=1e-5, atol=1e-5)
        nll = -float(jnp.mean(lp.log_prob)) / 2
        rec["nll"] = {"nats_per_dim_data_space": nll - stats.log_det_jacobian() / 2,
                      "nats_per_dim_model_space": nll, "divergence": "exact", "num_examples": args.num_nll,
                      "nfe_mean": float(jnp.mean(lp.nfe))}
        results["paths"][name] = rec
        print(name, json.dumps(rec), flush=True)
        samples[name]["ref"] = np.asarray(stats.invert(np.asarray(ref)))

    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(len(PATHS), len(nfes) + 1, figsize=(2.6 * (len(nfes) + 1), 2.6 * len(PATHS)))
    lim = np.abs(samples["cond_ot"]["ref"]).max() * 1.1
    for i, name in enumerate(PATHS):
        for j, nfe in enumerate(nfes):
            ax = axes[i, j]
            s = samples[name][nfe]
            ax.scatter(s[:, 0], s[:, 1], s=0.5, alpha=0.5, color="k", rasterized=True)
            ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim)
            ax.set_xticks([]), ax.set_yticks([])
            sw = results["paths"][name][f"euler_{nfe}"]["sliced_w2"]
            ax.set_title(f"{PATHS[name]}, NFE={nfe}\nSW2={sw:.3f}", fontsize=8)
        ax = axes[i, -1]
        r = samples[name]["ref"]
        ax.scatter(r[:, 0], r[:, 1], s=0.5, alpha=0.5, color="tab:blue", rasterized=True)
        ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title("held-out data", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "samples.png"), dpi=110)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    lines = ["| path | " + " | ".join(f"SW2 @NFE {n}" for n in nfes) + " | MMD² @NFE " + str(nfes[0])
             + " | dopri5 NFE | NLL (nats/dim) |", "|---" * (len(nfes) + 4) + "|"]
    for name, rec in results["paths"].items():
        lines.append(f"| {PATHS[name]} | " + " | ".join(f"{rec[f'euler_{n}']['sliced_w2']:.4f}" for n in nfes)
                     + f" | {rec[f'euler_{nfes[0]}']['mmd_rbf']:.4f} | {rec['dopri5_1e-5']['nfe_mean']:.0f}"
                     + f" | {rec['nll']['nats_per_dim_data_space']:.4f} |")
    table = "\n".join(lines)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(f"Reproduce: `{results['command']}`\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
