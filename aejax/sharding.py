"""Meshes, shardings and host-local -> global arrays: data parallelism over the "data" axis, and the latent axis
of sparse autoencoders split over the "model" axis.

The mesh is always 2-D, ("data", "model"). Batches are split over "data" and copied over "model". The train state
is replicated, except the leaves a model declares in `LATENT_AXES` (an SAE's encoder columns, decoder rows and
per-latent state, and their optimizer moments), whose latent axis is split over "model". The train step is one
`jax.jit` with these shardings; XLA (GSPMD) inserts the all-reduce of the gradients over "data" and the reduction
of the decoder's partial sums over "model", and `aejax.models.sae_select` selects the top-k exactly across the
model shards. The same code runs on 1 CPU, N simulated CPU devices, a GPU host, or several hosts (after
`jax.distributed.initialize()`).
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS, MODEL_AXIS = "data", "model"


def mesh_shape(num_devices: int, data: int = -1, model: int = 1) -> tuple[int, int]:
    """The (data, model) sizes of a mesh over `num_devices`; -1 for one axis means the devices left.

    Raises:
      ValueError: if a size is 0 or below -1, both are -1, or data * model != num_devices (or -1 leaves a
        fraction), naming the sizes and the devices.
    """
    for name, v in {"data": data, "model": model}.items():
        if not isinstance(v, (int, np.integer)) or v == 0 or v < -1:
            raise ValueError(f"config.mesh.{name}={v!r} must be a positive integer or -1 (the devices left).")
    if data == -1 and model == -1:
        raise ValueError("config.mesh.data and config.mesh.model cannot both be -1.")
    if -1 in (data, model):
        fixed = data * model * -1
        if num_devices % fixed:
            raise ValueError(
                f"A mesh data={data} x model={model} does not fit the {num_devices} devices: {fixed} does not "
                f"divide {num_devices}."
            )
        data, model = (num_devices // fixed, model) if data == -1 else (data, num_devices // fixed)
    if data * model != num_devices:
        raise ValueError(
            f"A mesh data={data} x model={model} needs {data * model} devices; there are {num_devices} "
            "(jax.devices()). Make the product equal the devices, or set one size to -1."
        )
    return data, model


def make_mesh(devices: Sequence[jax.Device] | None = None, *, data: int = -1, model: int = 1) -> Mesh:
    """A ("data", "model") mesh over `devices` (default: all devices of all hosts), checked before any compute.

    `jax.devices()` lists the devices host by host and the last mesh axis ("model") varies fastest, so on GPU
    hosts a "model" axis that divides a host's device count stays within the host: its collectives (the top-k
    candidates, the decoder's partial sums) run over the fast intra-host links, the gradient all-reduce of
    "data" across hosts (on TPU, `jax.make_mesh` follows the physical topology).

    Raises:
      ValueError: if data x model does not fit the devices (`mesh_shape`).
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(len(devices), data, model)
    auto = (jax.sharding.AxisType.Auto,) * 2
    return jax.make_mesh(shape, (DATA_AXIS, MODEL_AXIS), axis_types=auto, devices=devices)


def mesh_from_config(config) -> Mesh:
    """The mesh of `config.mesh` (data, model sizes; absent: every device on "data")."""
    m = config.get("mesh") or {}
    return make_mesh(data=m.get("data", -1), model=m.get("model", 1))


def data_size(mesh: Mesh) -> int:
    """The size of the "data" axis: the number of batch shards."""
    return mesh.shape[DATA_AXIS]


def model_size(mesh: Mesh) -> int:
    """The size of the "model" axis (1 for a mesh without one)."""
    return mesh.shape.get(MODEL_AXIS, 1)


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of parameters, optimizer state and metrics: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch: the leading (example) axis split over the "data" axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
    """Raises ValueError unless the global batch divides over the "data" axis and the hosts."""
    n = data_size(mesh)
    if global_batch_size % n:
        raise ValueError(
            f"batch_size={global_batch_size} does not divide over {n} devices (the mesh's data axis); use a "
            f"multiple of {n}."
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


def _leaf_name(path) -> str | None:
    """The last dict key of a pytree path ("W_enc" for params["W_enc"] and for Adam's mu["W_enc"])."""
    for key in reversed(path):
        if isinstance(key, jax.tree_util.DictKey):
            return str(key.key)
    return None


def state_shardings(abstract_state, mesh: Mesh, latent_axes: Mapping[str, int]):
    """The sharding of every leaf of a train state: axis `latent_axes[name]` of the leaves named `name` (the
    path's last dict key, so a parameter, its optimizer moments and a mutable-state leaf alike) split over
    "model"; every other leaf (and a leaf of that name without that axis, e.g. a scalar) replicated. With a
    "model" axis of size 1 every leaf is replicated.

    Args:
      abstract_state: a pytree of arrays or `jax.ShapeDtypeStruct`s (e.g. `jax.eval_shape` of the init).
      latent_axes: the model's `LATENT_AXES` {leaf name: axis of size n_latents}.

    Returns:
      A pytree of NamedShardings with the structure of `abstract_state`.

    Raises:
      ValueError: for a "model" axis > 1 when the model declares no latent axis (or no leaf has one), when the
        declared axes differ in size, or when n_latents does not divide over the axis (naming both).
    """
    m = model_size(mesh)
    if m == 1:
        return jax.tree.map(lambda _: replicated(mesh), abstract_state)

    def latent_axis(path, a) -> int | None:
        axis = latent_axes.get(_leaf_name(path))
        return axis if axis is not None and len(a.shape) > axis else None

    flat = jax.tree_util.tree_leaves_with_path(abstract_state)
    sizes = {a.shape[ax] for p, a in flat if (ax := latent_axis(p, a)) is not None}
    if len(sizes) != 1:
        why = "declares no latent axis (LATENT_AXES)" if not sizes else f"has latent axes of sizes {sorted(sizes)}"
        raise ValueError(f"The mesh has a model axis of {m} devices but the model {why}; use config.mesh.model=1.")
    (n,) = sizes
    if n % m:
        raise ValueError(
            f"n_latents={n} does not divide over the mesh's model axis of {m} devices; use a width that is a "
            f"multiple of {m} or another config.mesh.model."
        )

    def leaf(path, a):
        axis = latent_axis(path, a)
        if axis is None:
            return replicated(mesh)
        spec = [None] * len(a.shape)
        spec[axis] = MODEL_AXIS
        return NamedSharding(mesh, PartitionSpec(*spec))

    return jax.tree_util.tree_map_with_path(leaf, abstract_state)


@dataclasses.dataclass(frozen=True)
class TreeShardings:
    """A pytree of shardings in a hashable form (treedef + leaves), for the lru_cached step factories."""

    treedef: Any
    leaves: tuple

    @classmethod
    def of(cls, arrays) -> "TreeShardings":
        """The shardings of a pytree of jax.Arrays (e.g. the initialised train state)."""
        leaves, treedef = jax.tree.flatten(jax.tree.map(lambda a: a.sharding, arrays))
        return cls(treedef, tuple(leaves))

    def tree(self):
        return jax.tree.unflatten(self.treedef, self.leaves)
