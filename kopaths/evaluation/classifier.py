r"""A small CNN classifier whose penultimate features give a fast Fréchet distance.

Inception on a 2-core CPU runs at a few images per second, so for quick comparisons between
paths we also report the Fréchet distance between Gaussians fitted to the 128-d penultimate
features of a small CNN trained once on the dataset's training split:

.. math::  \mathrm{FD}_{\mathrm{clf}} = \|\mu_g-\mu_r\|^2 + \mathrm{tr}\big(C_g + C_r - 2(C_g C_r)^{1/2}\big).

**FD (classifier features, not comparable to published FID).** Values only rank models
evaluated with the *same* saved classifier. Images enter as NHWC values in ``[0, 255]``.

    python -m kopaths.evaluation.classifier --dataset fashion_mnist --output ~/.cache/kopaths/clf_fashion_mnist.npz
"""

from __future__ import annotations

import argparse
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
]

FD_LABEL = "FD (classifier features, not comparable to published FID)"


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


def _apply_batched(params, images, batch_size: int, features_only: bool) -> np.ndarray:
    images = _check_images(images)
    num_classes = params["Dense_1"]["kernel"].shape[-1]
    fn = jax.jit(lambda p, x: SmallCNN(num_classes).apply({"params": p}, x, features_only=features_only))
    return np.concatenate([np.asarray(fn(params, jnp.asarray(images[i : i + batch_size])))
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


def cached_classifier(data_cfg, path: str, *, epochs: int = 2, seed: int = 0) -> dict[str, Any]:
    """The classifier saved at ``path``, trained there first on ``data_cfg``'s training split if absent."""
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
