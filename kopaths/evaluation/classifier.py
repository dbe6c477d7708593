r"""A small CNN classifier whose penultimate features give a fast Fréchet distance.

Inception on a 2-core CPU runs at a few images per second, so for quick comparisons between
paths we also report the Fréchet distance between Gaussians fitted to the 128-d penultimate
features of a small CNN trained once on the dataset's training split:

.. math::  \mathrm{FD}_{\mathrm{clf}} = \|\mu_g-\mu_r\|^2 + \mathrm{tr}\big(C_g + C_r - 2(C_g C_r)^{1/2}\big).

**FD (classifier features, not comparable to published FID).** Values only rank models
evaluated with the *same* saved classifier. Images enter as NHWC values in ``[0, 255]``.

    python -m kopaths.evaluation.classifier --dataset fashion_mnist --output ~/.cache/kopaths/clf_fashion_mnist.npz

For Fashion-MNIST at its native 28x28 the package ships one such network
(:data:`BUILTIN_CLASSIFIERS`, ``weights/``): a fixed part of the metric, as InceptionV3 is of FID,
so FDs of different runs and machines are comparable and no run spends time training it.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from kopaths.evaluation.distances import frechet_distance_from_features
from kopaths.io import save_npz

__all__ = [
    "FD_LABEL",
    "SmallCNN",
    "train_classifier",
    "classifier_features",
    "classifier_fd",
    "save_classifier",
    "load_classifier",
    "labelled_images",
    "cached_classifier",
    "BUILTIN_CLASSIFIERS",
    "builtin_classifier_file",
    "load_builtin_classifier",
]

FD_LABEL = "FD (classifier features, not comparable to published FID)"

#: Shipped classifiers: dataset -> (file under ``weights/``, native resolution, SHA-256 of the file).
#: Fashion-MNIST's was trained by ``python -m kopaths.evaluation.classifier --dataset fashion_mnist
#: --epochs 1 --seed 0`` (test accuracy 0.876): bit for bit the network the main job trained in every
#: run before it shipped, so the FDs of earlier main-job reports stand.
BUILTIN_CLASSIFIERS: dict[str, tuple[str, int, str]] = {
    "fashion_mnist": ("fd_classifier_fashion_mnist.npz", 28,
                      "cea665c4f6bd912b5bd3255d70d13057027f2a8d5f15b17f29a8c2371e44e748"),
}


class SmallCNN(nn.Module):
    """conv32-conv32-pool-conv64-conv64-pool-dense128 (features) - dense(num_classes)."""

    num_classes: int = 10
    feature_dim: int = 128

    @nn.compact
    def __call__(self, x: jax.Array, *, features_only: bool = False) -> jax.Array:
        x = x / 127.5 - 1.0
        for width in (32, 64):
            x = nn.relu(nn.Conv(width, (3, 3))(x))
            x = nn.relu(nn.Conv(width, (3, 3))(x))
            x = nn.avg_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        f = nn.relu(nn.Dense(self.feature_dim)(x))
        if features_only:
            return f
        return nn.Dense(self.num_classes)(f)


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be NHWC, got shape {images.shape}.")
    return images.astype(np.float32)


def train_classifier(
    images, labels, *, key: jax.Array, num_classes: int = 10, epochs: int = 2, batch_size: int = 256, lr: float = 2e-3
) -> dict[str, Any]:
    """Trains :class:`SmallCNN` with Adam on ``images`` (NHWC, [0, 255]) and integer ``labels``.

    Returns the parameter pytree.
    """
    images = _check_images(images)
    labels = np.asarray(labels, np.int32)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}.")
    model = SmallCNN(num_classes)
    k_init, k_perm = jax.random.split(key)
    params = model.init(k_init, jnp.zeros((1, *images.shape[1:])))["params"]
    steps = epochs * (len(images) // batch_size)
    tx = optax.adam(optax.cosine_decay_schedule(lr, max(steps, 1)))
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x, y):
        def loss_fn(p):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, g = jax.value_and_grad(loss_fn)(params)
        upd, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, upd), opt, loss

    rng = np.random.default_rng(int(jax.random.randint(k_perm, (), 0, 2**31 - 1)))
    for _ in range(epochs):
        perm = rng.permutation(len(images))
        for i in range(len(images) // batch_size):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            params, opt, _ = step(params, opt, jnp.asarray(images[idx]), jnp.asarray(labels[idx]))
    return params


@functools.partial(jax.jit, static_argnums=(2, 3))
def _apply(params, x, num_classes: int, features_only: bool) -> jax.Array:
    return SmallCNN(num_classes).apply({"params": params}, x, features_only=features_only)


def _apply_batched(params, images, batch_size: int, features_only: bool) -> np.ndarray:
    images = _check_images(images)
    num_classes = int(params["Dense_1"]["kernel"].shape[-1])
    return np.concatenate([np.asarray(_apply(params, jnp.asarray(images[i : i + batch_size]), num_classes, features_only))
                           for i in range(0, len(images), batch_size)])


def classifier_features(params, images, *, batch_size: int = 500) -> np.ndarray:
    """128-d penultimate features of NHWC images in ``[0, 255]``."""
    return _apply_batched(params, images, batch_size, True)


def classifier_accuracy(params, images, labels, *, batch_size: int = 500) -> float:
    """Top-1 accuracy of the classifier."""
    logits = _apply_batched(params, images, batch_size, False)
    return float(np.mean(np.argmax(logits, -1) == np.asarray(labels)))


def classifier_fd(params, images_a, images_b) -> float:
    """FD (classifier features, not comparable to published FID) between two image sets."""
    return frechet_distance_from_features(classifier_features(params, images_a), classifier_features(params, images_b))


def save_classifier(path: str, params, meta: dict[str, Any] | None = None) -> None:
    """Saves the parameters (flat ``.npz``, keys ``Conv_0/kernel``) plus string metadata."""
    flat = {"/".join(str(getattr(k, "key", k)) for k in p): np.asarray(v)
            for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    meta = {f"__meta__{k}": np.array(str(v)) for k, v in (meta or {}).items()}
    save_npz(path, **flat, **meta)


def load_classifier(path: str):
    """Inverse of :func:`save_classifier`; returns ``(params, meta)``."""
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No classifier at {path}; train one with python -m kopaths.evaluation.classifier --output {path}"
        )
    params: dict[str, Any] = {}
    meta = {}
    with np.load(path) as f:
        for key in f.files:
            if key.startswith("__meta__"):
                meta[key[len("__meta__"):]] = str(f[key])
                continue
            node = params
            *parents, leaf = key.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = jnp.asarray(f[key])
    return params, meta


def labelled_images(data_cfg, split: str, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` (default all) images of ``split`` (uint8 NHWC, at the config's resolution) and labels."""
    from kopaths.data import open_split  # noqa: PLC0415

    src = open_split(data_cfg, split)
    n = len(src) if n is None else min(n, len(src))
    recs = src.records(range(n))
    return np.stack([src.decode(r) for r in recs]), np.asarray([int(r["label"]) for r in recs])


def builtin_classifier_file(data_cfg) -> str | None:
    """The shipped classifier for ``data_cfg`` (its dataset at the native resolution), else ``None``."""
    entry = BUILTIN_CLASSIFIERS.get(data_cfg.name)
    if entry is None or data_cfg.get("resolution") not in (None, entry[1]):
        return None
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", entry[0])


def load_builtin_classifier(data_cfg) -> tuple[dict[str, Any], dict[str, str]]:
    """``(params, meta)`` of the shipped classifier for ``data_cfg``, after checking the file's SHA-256."""
    path = builtin_classifier_file(data_cfg)
    if path is None:
        raise ValueError(f"No shipped FD classifier for dataset {data_cfg.name!r} at resolution "
                         f"{data_cfg.get('resolution')}; shipped: { {k: v[1] for k, v in BUILTIN_CLASSIFIERS.items()} }.")
    if not os.path.exists(path):
        raise FileNotFoundError(f"The shipped FD classifier {path} is missing; reinstall kopaths.")
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    expected = BUILTIN_CLASSIFIERS[data_cfg.name][2]
    if digest != expected:
        raise ValueError(f"The shipped FD classifier {path} is damaged (SHA-256 {digest}, expected {expected}); "
                         "restore it from the repository.")
    return load_classifier(path)


def cached_classifier(data_cfg, path: str, *, epochs: int = 2, seed: int = 0, builtin: bool = False) -> dict[str, Any]:
    """The classifier saved at ``path``, trained there first on ``data_cfg``'s training split if absent.

    With ``builtin``, the shipped network (:func:`load_builtin_classifier`) is used instead wherever
    ``data_cfg`` has one; nothing is trained or written then.
    """
    if builtin and builtin_classifier_file(data_cfg) is not None:
        return load_builtin_classifier(data_cfg)[0]
    if not os.path.exists(os.path.expanduser(path)):
        images, labels = labelled_images(data_cfg, data_cfg.get("split", "train"))
        params = train_classifier(images, labels, key=jax.random.key(seed), num_classes=int(labels.max()) + 1,
                                  epochs=epochs)
        save_classifier(os.path.expanduser(path), params, {"dataset": data_cfg.name, "resolution": data_cfg.get("resolution"),
                                                           "epochs": epochs, "seed": seed, "label": FD_LABEL})
    return load_classifier(path)[0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Train the FD classifier once on a dataset's training split.")
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--output", required=True)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num_train", type=int, default=None)
    args = ap.parse_args(argv)
    t = time.time()
    from kopaths.data import default_data_config  # noqa: PLC0415

    x, y = labelled_images(default_data_config(args.dataset), "train", args.num_train)
    params = train_classifier(x, y, key=jax.random.key(args.seed), num_classes=int(y.max()) + 1, epochs=args.epochs)
    xt, yt = labelled_images(default_data_config(args.dataset), "test")
    acc = classifier_accuracy(params, xt, yt)
    save_classifier(os.path.expanduser(args.output), params,
                    {"dataset": args.dataset, "test_accuracy": acc, "epochs": args.epochs, "seed": args.seed,
                     "num_train": len(x), "label": FD_LABEL})
    print(f"trained on {len(x)} {args.dataset} images in {time.time() - t:.0f}s; test accuracy {acc:.4f}; "
          f"saved to {args.output}")


if __name__ == "__main__":
    main()
