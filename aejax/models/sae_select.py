"""Exact top-k selection of sparse-autoencoder latents when the latent axis n is sharded over the mesh's "model"
axis (`aejax.sharding`), and plain `jax.lax.top_k` otherwise.

Sharded, each device holds a block [B / D, n / M] of the pre-activations (D, M: the sizes of the "data" and
"model" axes). The k largest of a row are among the union of every block's own k largest, so

  1. each device takes the top-k of its block (`lax.top_k`), with global indices;
  2. the M * k candidates of a row (or every block's candidates, for the batch top-k) are all-gathered: k values
     per device and row, never the [B, n] pre-activations;
  3. every device selects the global winners among the candidates, ordered by (value descending, global index
     ascending), which is `lax.top_k`'s order on the unsharded array (ties go to the lower index);
  4. each device writes the winners that fall in its own block, so the code stays sharded like the input.

The mesh is the one the step is traced under (`jax.sharding.get_abstract_mesh()`; `aejax.train_step` traces under
the run's mesh). Without a mesh (or on 1 x 1) the functions are the plain single-device computation.
"""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

DATA, MODEL = "data", "model"  # the names of aejax.sharding's mesh axes (not imported: models do not import it)


def _axis_sizes(x: jax.Array) -> tuple[int, int] | None:
    """(D, M) of the current ("data", "model") mesh for x [B, n], or None when nothing is split (no such mesh, or
    1 x 1). D is 1 when the batch does not divide over "data" (e.g. the model's init on one row).

    A data-only mesh (D > 1, M = 1) takes the sharded path too: left to itself, XLA all-gathers the [B, n]
    pre-activations to every device for a `lax.top_k` of rows split over "data" (seen in the compiled step of a
    4 x 1 mesh, benchmarks/bench_model_parallel.py --hlo); under shard_map each device selects its own rows.

    Raises:
      ValueError: if n does not divide over the "model" axis.
    """
    mesh = jax.sharding.get_abstract_mesh()
    shape = dict(mesh.shape) if not mesh.empty else {}
    if set(shape) != {DATA, MODEL}:  # no mesh, or one not made by aejax.sharding.make_mesh: XLA partitions alone
        return None
    m = shape[MODEL]
    if x.shape[1] % m:
        raise ValueError(f"n_latents={x.shape[1]} does not divide over the mesh's model axis of size {m}.")
    d = shape[DATA] if x.shape[0] % shape[DATA] == 0 else 1
    return None if d == m == 1 else (d, m)


def _winners(k: int, vals: jax.Array, *index: jax.Array) -> tuple[jax.Array, ...]:
    """The k best candidates along the last axis by (value descending, then the global index ascending, given as
    one or more arrays, most significant first): (values, *index), each [..., k]."""
    out = jax.lax.sort((-vals, *index), dimension=vals.ndim - 1, num_keys=1 + len(index))
    return (-out[0][..., :k], *(a[..., :k] for a in out[1:]))


def _sharded(fn, x: jax.Array, d: int):
    """Runs fn(block [B/d, n/M]) -> block under shard_map over the current mesh (rows over "data" when d > 1)."""
    spec = P(DATA if d > 1 else None, MODEL)
    return jax.shard_map(fn, in_specs=spec, out_specs=spec, axis_names={DATA, MODEL} if d > 1 else {MODEL})(x)


def row_topk(x: jax.Array, k: int) -> jax.Array:
    """The k largest entries of each row of x [B, n], others 0: `scatter(lax.top_k(x, k))`, exactly, also when n
    is sharded over "model" (module docstring). Differentiable (the gradient flows to the kept entries).

    Returns:
      [B, n], sharded like x.

    Raises:
      ValueError: if n does not divide over the mesh's "model" axis.
    """
    sizes = _axis_sizes(x)
    if sizes is None:
        vals, idx = jax.lax.top_k(x, k)  # [B, k]
        rows = jnp.arange(x.shape[0])[:, None]
        return jnp.zeros_like(x).at[rows, idx].set(vals)
    d, m = sizes
    n_local = x.shape[1] // m

    def block(xb):  # [b, n/M]
        rows = jnp.arange(xb.shape[0])[:, None]
        vals, idx = jax.lax.top_k(xb, min(k, n_local))  # [b, kk]
        if m == 1:  # rows split over "data" only: each device's rows are whole
            return jnp.zeros_like(xb).at[rows, idx].set(vals)
        offset = jax.lax.axis_index(MODEL) * n_local
        vals = jax.lax.all_gather(vals, MODEL, axis=1, tiled=True)  # [b, M*kk], shard-major
        gidx = jax.lax.all_gather(idx + offset, MODEL, axis=1, tiled=True)
        vals, gidx = _winners(k, vals, gidx)  # [b, k]
        local = gidx - offset
        # Winners of other shards go to an out-of-range column and are dropped (a negative index would wrap).
        local = jnp.where((local >= 0) & (local < n_local), local, n_local)
        return jnp.zeros_like(xb).at[rows, local].set(vals, mode="drop")

    return _sharded(block, x, d)


def batch_topk(x: jax.Array, k_total: int) -> jax.Array:
    """The k_total largest entries of the whole of x [B, n] (flattened row-major), others 0: exactly
    `lax.top_k(x.reshape(-1), k_total)` scattered back, also when x is sharded over "data" and "model".

    Returns:
      [B, n], sharded like x.

    Raises:
      ValueError: if n does not divide over the mesh's "model" axis.
    """
    sizes = _axis_sizes(x)
    flat = x.reshape(-1)
    if sizes is None:
        vals, idx = jax.lax.top_k(flat, k_total)
        return jnp.zeros_like(flat).at[idx].set(vals).reshape(x.shape)
    d, m = sizes
    axes = (DATA, MODEL) if d > 1 else (MODEL,)

    def block(xb):  # [B/d, n/M]
        b, n_local = xb.shape
        kk = min(k_total, b * n_local)
        vals, idx = jax.lax.top_k(xb.reshape(-1), kk)
        row0 = (jax.lax.axis_index(DATA) * b) if d > 1 else 0
        col0 = jax.lax.axis_index(MODEL) * n_local
        # The global (row, column) of each candidate: row-major order without a B * n index that overflows int32.
        row, col = row0 + idx // n_local, col0 + idx % n_local
        vals, row, col = (jax.lax.all_gather(a, axes, tiled=True) for a in (vals, row, col))  # [D*M*kk]
        vals, row, col = _winners(k_total, vals, row, col)
        r, c = row - row0, col - col0
        mine = (r >= 0) & (r < b) & (c >= 0) & (c < n_local)
        # Winners of other blocks go to an out-of-range row and are dropped.
        return jnp.zeros_like(xb).at[jnp.where(mine, r, b), jnp.where(mine, c, 0)].set(vals, mode="drop")

    return _sharded(block, x, d)
