"""Data parallelism in current JAX: a one-axis ("data",) mesh, replicated state, batch-sharded inputs.

This is the modern form of pmap data parallelism (MISSION.md): the train step is one `jax.jit` with explicit
shardings; XLA inserts the all-reduce of the gradients. The same code runs on 1 CPU, N simulated CPU devices,
a GPU, or several hosts (after `jax.distributed.initialize()`).
"""

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh ("data",) over `devices` (default: all devices of all hosts)."""
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of parameters, optimizer state and metrics: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch: the leading (example) axis split over the "data" axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    """Raises ValueError unless the global batch divides over the devices and the hosts."""
    n = mesh.devices.size
    if global_batch_size % n:
        raise ValueError(
            f"batch_size={global_batch_size} does not divide over {n} devices; use a multiple of {n}."
        )
    if global_batch_size % jax.process_count():
        raise ValueError(f"batch_size={global_batch_size} does not divide over {jax.process_count()} hosts.")


def to_global(local_tree, mesh: Mesh):
    """Host-local numpy batch (this host's rows) -> global jax.Arrays sharded on "data"."""
    sharding = batch_sharded(mesh)
    if jax.process_count() == 1:  # the local rows are the whole batch: one plain transfer, less host time
        return jax.device_put(jax.tree.map(np.asarray, local_tree), sharding)
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), local_tree)


def replicate(tree, mesh: Mesh):
    """Places a pytree of host values on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))


def host_rows(global_tree):
    """This host's contiguous rows of a full (global) host-side batch, for `to_global`."""
    p, n = jax.process_index(), jax.process_count()

    def rows(a):
        per_host = len(a) // n
        return a[p * per_host : (p + 1) * per_host]

    return jax.tree.map(rows, global_tree)
