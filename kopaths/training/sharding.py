"""Device mesh from config, parameter/batch shardings, and global-batch assembly.

The mesh is given as ``(("data", n_data), ("fsdp", n_fsdp))``; one size may be -1 and
absorbs the remaining devices. The batch's leading axis is split over all mesh axes;
parameters are replicated, except that with ``fsdp > 1`` each large parameter is split
along its largest axis divisible by the ``fsdp`` size.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

__all__ = [
    "maybe_initialize_distributed",
    "make_mesh",
    "batch_sharding",
    "replicated",
    "state_shardings",
    "make_global_batch",
]


def maybe_initialize_distributed(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None,
    force: bool = False,
) -> bool:
    """Calls ``jax.distributed.initialize`` for multi-process runs; returns whether it did.

    It runs when ``force`` is set, when a coordinator address is given, or when the
    environment names one (``JAX_COORDINATOR_ADDRESS``) or several processes
    (``JAX_NUM_PROCESSES`` > 1). Unset arguments are auto-detected by JAX (TPU pods,
    SLURM, Open MPI, ...).
    """
    env_procs = int(os.environ.get("JAX_NUM_PROCESSES", "1") or 1)
    if not (force or coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or env_procs > 1):
        return False
    kwargs = {}
    if coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs["coordinator_address"] = coordinator_address or os.environ["JAX_COORDINATOR_ADDRESS"]
    if num_processes is not None or env_procs > 1:
        kwargs["num_processes"] = num_processes if num_processes is not None else env_procs
    if process_id is not None or "JAX_PROCESS_ID" in os.environ:
        kwargs["process_id"] = process_id if process_id is not None else int(os.environ["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)
    return True


def make_mesh(axes: Sequence[Sequence[Any]], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a ``Mesh`` from ``[(name, size), ...]`` with at most one size of -1."""
    devices = list(jax.devices() if devices is None else devices)
    names = tuple(str(a[0]) for a in axes)
    sizes = [int(a[1]) for a in axes]
    if sizes.count(-1) > 1:
        raise ValueError(f"At most one mesh axis may have size -1, got {list(axes)}.")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not split into mesh {list(axes)}.")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(f"Mesh {dict(zip(names, sizes))} needs {int(np.prod(sizes))} devices; {len(devices)} available.")
    try:
        mesh_devices = mesh_utils.create_device_mesh(sizes, devices)
    except Exception:  # noqa: BLE001 - fall back to a plain reshape on unusual topologies
        mesh_devices = np.asarray(devices).reshape(sizes)
    return Mesh(mesh_devices, names)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over every mesh axis."""
    return NamedSharding(mesh, P(mesh.axis_names))


def replicated(mesh: Mesh) -> NamedSharding:
    """Fully replicated sharding."""
    return NamedSharding(mesh, P())


def _fsdp_spec(shape: tuple[int, ...], size: int, axis: str, min_size: int) -> P:
    if size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda i: -shape[i]):
        if shape[dim] % size == 0:
            spec = [None] * len(shape)
            spec[dim] = axis
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: Mesh, fsdp_axis: str = "fsdp", min_size: int = 2**14) -> Any:
    """Shardings for a state pytree: replicated, or FSDP-split along ``fsdp_axis`` if it exists."""
    size = mesh.shape.get(fsdp_axis, 1)
    return jax.tree.map(
        lambda x: NamedSharding(mesh, _fsdp_spec(tuple(x.shape), size, fsdp_axis, min_size)), abstract_state
    )


def make_global_batch(local_batch: Any, sharding: NamedSharding) -> Any:
    """Assembles process-local numpy batches into global ``jax.Array``s with ``sharding``."""
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)
