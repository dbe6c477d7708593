r"""Paper Table 1 at our scale: Fashion-MNIST with DDPM/VP, SI, Cond-OT and KO paths.

Trains the same ADM U-Net (``experiments/configs/fmnist_unet.py``) on each path with the same
budget and seed (``python -m kopaths.train``; re-running resumes), then evaluates the last three
checkpoints of each run with :mod:`kopaths.evaluate` and averages them, as the paper did:

* NLL in bits/dim of the 8-bit test images (``K`` dequantisation samples, Hutchinson probes
  stated; dopri5 at ``--tol``);
* KE per dimension along dopri5 sampling trajectories;
* FD with Euler at 20/50/100 steps and FD + NFE with dopri5 at ``--tol``. The FD is
  **FD (classifier features, not comparable to published FID)** unless ``--inception`` is given
  (then FID with the converted TF-FID weights is added; slow on CPU).

Writes ``results.json`` and ``results.md`` under ``--out``. Everything after ``--`` is passed to
``kopaths.train`` as config overrides (e.g. ``--config.total_steps=20000``).

Reproduce the README's table (2-core CPU, about 2.5 hours; prepare the data and the FD classifier
once; re-running resumes training and reuses finished evaluations)::

    python -m kopaths.data.prepare --dataset fashion_mnist
    python -m kopaths.evaluation.classifier --dataset fashion_mnist --output ~/.cache/kopaths/clf_fashion_mnist.npz
    PYTHONPATH=. python experiments/fmnist_table1.py --root /tmp/fmnist_table1 --out experiments/results/fmnist_table1 \
        --num_samples 128 --num_bpd 16 --K 1 --probes 1 --tol 1e-5

A GPU-scale run uses ``--variant full`` (the 100k-step config) with the default evaluation sizes.

Smoke test (seconds-long training, tiny evaluation)::

    PYTHONPATH=. python experiments/fmnist_table1.py --quick --root /tmp/t1q --out /tmp/t1q_out
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

PATHS = {"vp": "DDPM/VP", "cosine": "SI", "cond_ot": "Cond-OT", "ko": "KO"}
HERE = os.path.dirname(os.path.abspath(__file__))


def train(path: str, workdir: str, variant: str, overrides: list[str]) -> None:
    cfg = os.path.join(HERE, "configs", "fmnist_unet.py") + f":{path}" + (f",{variant}" if variant != "full" else "")
    cmd = [sys.executable, "-m", "kopaths.train", f"--config={cfg}", f"--workdir={workdir}",
           "--config.progress_bar=false", *overrides]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def _finished_eval(out_json: str, ev_args: list[str]) -> dict | None:
    """The record in ``out_json`` if it scored the same checkpoints with the same arguments (re-runs resume)."""
    from kopaths import evaluate  # noqa: PLC0415

    if not os.path.exists(out_json):
        return None
    with open(out_json) as f:
        record = json.load(f)
    wanted = vars(evaluate.parse_args(ev_args))
    have = record.get("args", {})
    same = all(have.get(k) == v for k, v in wanted.items() if k != "workdir")
    return record if same and record.get("steps") == evaluate.select_steps(wanted["workdir"], wanted["steps"]) else None


def main() -> None:
    argv = sys.argv[1:]
    overrides = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default="/tmp/fmnist_table1", help="training workdirs <root>/<path>")
    ap.add_argument("--out", default="experiments/results/fmnist_table1")
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--variant", default="cpu", choices=("cpu", "full"),
                    help="fmnist_unet config variant: 'cpu' (1.2M-parameter U-Net, 1200 steps) or 'full' (GPU scale)")
    ap.add_argument("--num_samples", type=int, default=2000)
    ap.add_argument("--num_bpd", type=int, default=500)
    ap.add_argument("--K", type=int, default=1)
    ap.add_argument("--probes", type=int, default=1)
    ap.add_argument("--tol", type=float, default=1e-5)
    ap.add_argument("--classifier", default="~/.cache/kopaths/clf_fashion_mnist.npz")
    ap.add_argument("--inception", action="store_true")
    ap.add_argument("--quick", action="store_true", help="runlocal configs and a tiny evaluation (smoke test)")
    ap.add_argument("--skip_train", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.num_samples, args.num_bpd, args.tol = 32, 4, 1e-3
    os.makedirs(args.out, exist_ok=True)

    from kopaths import evaluate  # noqa: PLC0415

    euler = "20,50,100" if not args.quick else "2,4"
    results = {"command": "PYTHONPATH=. python " + " ".join(sys.argv), "paths": {}}
    for path in args.paths.split(","):
        wd = os.path.join(args.root, path)
        if not args.skip_train:
            train(path, wd, "runlocal" if args.quick else args.variant, overrides)
        ev_args = ["--workdir", wd, "--steps", "last3", "--num_samples", str(args.num_samples), "--euler_nfe", euler,
                   "--tol", str(args.tol), "--num_bpd", str(args.num_bpd), "--K", str(args.K),
                   "--probes", str(args.probes), "--output", os.path.join(args.out, f"eval_{path}.json")]
        clf = os.path.expanduser(args.classifier) if args.classifier else None
        if clf and os.path.exists(clf):
            ev_args += ["--classifier", clf]
        elif clf:
            print(f"no FD classifier at {clf}: FD columns will be empty", flush=True)
        if args.inception:
            ev_args.append("--inception")
        out_json = os.path.join(args.out, f"eval_{path}.json")
        record = _finished_eval(out_json, ev_args)
        if record is None:
            record = evaluate.main(ev_args)
        else:
            print(f"{path}: reusing {out_json} (same checkpoints and evaluation arguments)", flush=True)
        results["paths"][path] = record["mean_over_steps"]
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(results, f, indent=2)

    fd_key = next((k for r in results["paths"].values() for k in r.get("dopri5", {}) if k.startswith("FD")), None)
    steps = euler.split(",")
    head = ["path", "NLL (bpd)", "KE"] + [f"FD@Euler {n}" for n in steps] + ["FD dopri5", "NFE dopri5"]
    lines = [f"Reproduce: `{results['command']}`", "",
             f"FD = {fd_key or 'n/a'}; NLL with K={args.K} dequantisation sample(s), Hutchinson probes={args.probes}, "
             f"dopri5 rtol=atol={args.tol}; values are means over the last 3 checkpoints.", "",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for path, r in results["paths"].items():
        def fd(block):
            v = r.get(block, {}).get(fd_key) if fd_key else None
            return f"{v:.2f}" if isinstance(v, float) else "—"

        nll = r.get("nll", {}).get("bits_per_dim")
        row = [PATHS[path], f"{nll:.3f}" if nll is not None else "—", f"{r['kinetic_energy']:.3f}"]
        row += [fd(f"euler_{n}") for n in steps] + [fd("dopri5"), f"{r['dopri5']['nfe_mean']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
