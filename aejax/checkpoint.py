"""Checkpoints with orbax's CheckpointManager: periodic and final saves, keep the last N, resume or init.

A checkpoint holds the TrainState (params, optimizer state, step, RNG) and a JSON record of the data position;
the input pipeline is a pure function of the step, so the step is the whole data position.
"""

from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath


class IncompatibleCheckpointError(ValueError):
    """The checkpoint in a workdir holds a state of another structure than the one the config builds."""

    def __init__(self, directory, step: int, differences: list[str]):
        self.step, self.differences = step, differences
        super().__init__(
            f"The checkpoint at step {step} in {directory} holds a state of another structure than this config "
            f"builds ({len(differences)} differing leaves: {'; '.join(differences[:6])}"
            f"{' ...' if len(differences) > 6 else ''})."
        )


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):  # DictKey, GetAttrKey, SequenceKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_shapes(tree) -> dict[str, tuple[tuple[int, ...], str]]:
    """{"params/encoder_0/kernel": (shape, dtype), ...} of a pytree of arrays, abstract arrays or orbax
    ArrayMetadata; dataclass fields, dict keys and sequence indices all become path components."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(_key_name(k) for k in path): (tuple(v.shape), str(v.dtype)) for path, v in leaves}


def describe_difference(saved: dict, want: dict) -> list[str]:
    """Human-readable differences between two `leaf_shapes` dicts (saved -> wanted)."""

    def order(key: str):  # parameters first: they say most about what changed
        return (not key.startswith("params/"), key)

    out = [
        f"{k}: saved {saved[k][0]} {saved[k][1]}, config {want[k][0]} {want[k][1]}"
        for k in sorted(saved.keys() & want.keys(), key=order)
        if saved[k] != want[k]
    ]
    out += [f"{k}: only in the checkpoint" for k in sorted(saved.keys() - want.keys(), key=order)]
    out += [f"{k}: only in the config's state" for k in sorted(want.keys() - saved.keys(), key=order)]
    return out


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager` for one run directory.

    Args:
      directory: where step folders are written (created if missing); must be absolute or is made absolute.
      max_to_keep: how many of the newest checkpoints to keep.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3):
        self.directory = epath.Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            # Handlers named up front, so a fresh manager can read a checkpoint's metadata before any restore.
            item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state, meta: dict[str, Any]) -> None:
        """Saves asynchronously; call `wait` (or `close`) before relying on it."""
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        )

    def restore(self, step: int, abstract_state) -> tuple[Any, dict[str, Any]]:
        """Restores (state, meta) at `step` into the shardings of `abstract_state`."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()),
        )
        return restored["state"], restored["meta"]

    def structure(self, step: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """{leaf path: (shape, dtype)} of the state saved at `step`, read from its metadata (no arrays)."""
        return leaf_shapes(self._manager.item_metadata(step)["state"].tree)

    def check_compatible(self, step: int, abstract_state) -> None:
        """Raises IncompatibleCheckpointError unless the state at `step` has the leaves of `abstract_state`."""
        saved, want = self.structure(step), leaf_shapes(abstract_state)
        if saved != want:
            raise IncompatibleCheckpointError(self.directory, step, describe_difference(saved, want))

    def restore_or_init(self, init_fn: Callable[[], Any]) -> tuple[Any, dict[str, Any] | None]:
        """The latest checkpoint if any (meta included), otherwise `init_fn()` and None.

        Raises:
          IncompatibleCheckpointError: if the latest checkpoint holds a state of another structure (a model or
            optimizer change), before anything is read into memory.
        """
        step = self.latest_step()
        if step is None:
            return init_fn(), None
        abstract = jax.eval_shape(init_fn)
        self.check_compatible(step, abstract)
        return self.restore(step, init_fn())

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
