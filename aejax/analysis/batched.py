"""Apply a function to a whole split in fixed-size chunks: jitted once, sharded over the data mesh, in order.

The analyses apply a model (reconstruction, codes, Jacobians, a Gibbs step) to thousands of rows; one call on
all of them can exhaust memory and a new last-chunk shape compiles again. `batched_apply` pads the last chunk to
the chunk size (with copies of the last row), so one shape compiles once for any N, shards each chunk on the
`"data"` axis as `aejax.loop.evaluate` does, and returns host (numpy) arrays, the padding dropped.

    codes = batched_apply(lambda xb, v: model.apply(v, xb, method="encode"), x, variables)
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from aejax import sharding

DEFAULT_BATCH_SIZE = 500


def padded_batch_size(batch_size: int, num_devices: int) -> int:
    """The chunk size used: `batch_size` rounded up to a multiple of the devices (each gets the same rows)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    return -(-batch_size // num_devices) * num_devices


def batched_apply(
    fn: Callable[..., Any],
    x: Any,
    *args: Any,
    batch_size: int = DEFAULT_BATCH_SIZE,
    mesh: Mesh | None = None,
    rng: jax.Array | None = None,
) -> Any:
    """fn over the rows of x in chunks of one shape, outputs concatenated in order on the host.

    Args:
      fn: `fn(xb, *args)`, or `fn(xb, key, *args)` when `rng` is given; xb a pytree of [B, ...] arrays (the
        structure of x), and every output leaf [B, ...] with row i depending on row i of xb only (padding rows
        are computed and dropped). It is jitted here; JAX caches the compilation per function object, so reuse
        one function (not a fresh lambda per call) to compile once across calls.
      x: a pytree of [N, ...] host arrays, the same N in every leaf; N >= 1.
      *args: pytrees passed whole (replicated) to every call, e.g. the model's variables; as arguments rather
        than closed-over constants, they are not baked into (and do not slow) the compiled program.
      batch_size: rows per call, rounded up to a multiple of the mesh's devices (`padded_batch_size`).
      mesh: the data mesh (default: this process's devices, `jax.local_devices()`: the analyses run on process 0
        alone, and a mesh over every process's devices would wait for the others). Given a multi-process mesh,
        every process must call with the same arguments, each contributing its rows (`sharding.host_rows`).
      rng: if given, chunk i receives `jax.random.fold_in(rng, i)`, the convention of `loop.evaluate`.

    Returns:
      fn's output structure with every leaf a numpy [N, ...] array.

    Raises:
      ValueError: if x is empty, its leaves disagree on N, or batch_size < 1.
    """
    leaves = jax.tree.leaves(x)
    n = len(leaves[0]) if leaves else 0
    if n == 0:
        raise ValueError("batched_apply needs at least one row.")
    if any(len(leaf) != n for leaf in leaves):
        raise ValueError(f"Every leaf of x needs the same number of rows, got {[len(a) for a in leaves]}.")
    mesh = mesh or sharding.make_mesh(jax.local_devices())
    collective = mesh.is_multi_process
    hosts = jax.process_count() if collective else 1
    size = padded_batch_size(batch_size, mesh.devices.size)
    # sharding.host_rows splits a chunk's rows evenly over the hosts.
    size = padded_batch_size(size, mesh.devices.size * hosts)
    rows, whole = sharding.batch_sharded(mesh), sharding.replicated(mesh)
    num_args = len(args) + (rng is not None)
    jfn = jax.jit(fn, in_shardings=(rows,) + (whole,) * num_args, out_shardings=rows)
    args = sharding.replicate(args, mesh)
    outs = []
    for i, start in enumerate(range(0, n, size)):
        chunk = jax.tree.map(lambda a, s=start: _pad_rows(np.asarray(a[s : s + size]), size), x)
        key = () if rng is None else (sharding.replicate(jax.random.fold_in(rng, i), mesh),)
        if collective:  # batch-sharded outputs span every process's devices: gather them whole onto each host
            out = jfn(sharding.to_global(sharding.host_rows(chunk), mesh), *key, *args)
            out = multihost_utils.process_allgather(out, tiled=True)
        else:
            out = jax.device_get(jfn(jax.device_put(chunk, rows), *key, *args))
        valid = min(size, n - start)
        outs.append(jax.tree.map(lambda a, v=valid: np.asarray(a)[:v], out))
    return jax.tree.map(lambda *chunks: np.concatenate(chunks), *outs)


def _pad_rows(a: np.ndarray, size: int) -> np.ndarray:
    """[n, ...] -> [size, ...], n <= size, the last row repeated (a real row, valid input for any fn)."""
    return a if len(a) == size else np.concatenate([a, np.repeat(a[-1:], size - len(a), axis=0)])
