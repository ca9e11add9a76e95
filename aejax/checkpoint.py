"""Checkpoints with orbax's CheckpointManager: periodic and final saves, keep the last N, resume or init.

A checkpoint holds the TrainState (params, optimizer state, step, RNG) and a JSON record of the data position;
the input pipeline is a pure function of the step, so the step is the whole data position.
"""

import os
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


class NoReadableCheckpointError(RuntimeError):
    """Checkpoints exist but none can be read."""

    def __init__(self, directory, failures: dict[int, str]):
        self.failures = failures
        listed = "; ".join(f"step {step}: {why}" for step, why in sorted(failures.items(), reverse=True))
        super().__init__(
            f"No checkpoint in {directory} can be read ({listed}). Nothing was deleted; move the damaged step "
            "folders away to start afresh, or restore them from a copy."
        )


def _short(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}{'...' if len(text) > 160 else ''}"


def latest_step(workdir: str) -> int | None:
    """The newest checkpoint step in `<workdir>/checkpoints`, or None when it holds none (or does not exist; the
    directory is not created)."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return None
    ckpt = Checkpointer(directory)
    try:
        return ckpt.latest_step()
    finally:
        ckpt.close()


class Checkpointer:
    """Thin wrapper over `ocp.CheckpointManager` for one run directory.

    Args:
      directory: where step folders are written (created if missing); must be absolute or is made absolute.
      max_to_keep: how many of the newest checkpoints to keep.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3):
        self.directory = epath.Path(directory).absolute()
        self.skipped: dict[int, str] = {}
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
        """The newest readable checkpoint (meta included), otherwise `init_fn()` and None.

        A checkpoint that fails to read (truncated files, a copy cut short) is skipped and the next older one
        tried, as trusted training systems do; the skipped steps and their errors are left in `self.skipped`
        ({step: message}) for the caller to report, and nothing is deleted (`quarantine` moves them aside).

        Raises:
          IncompatibleCheckpointError: if a readable checkpoint holds a state of another structure (a model or
            optimizer change), before any array is read.
          NoReadableCheckpointError: if checkpoints exist but none can be read; the message names every step.
        """
        self.skipped = {}
        steps = sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            return init_fn(), None
        abstract = jax.eval_shape(init_fn)
        for step in steps:
            try:
                saved = self.structure(step)
            except Exception as e:  # orbax / TensorStore / JSON raise many types for damaged files
                self.skipped[step] = _short(e)
                continue
            want = leaf_shapes(abstract)
            if saved != want:
                raise IncompatibleCheckpointError(self.directory, step, describe_difference(saved, want))
            try:
                # Into the abstract state when it carries the shardings (build.make_init_fn's does): the fresh
                # state is never allocated beside the restored one, which matters when the state fills the devices.
                placed = all(leaf.sharding is not None for leaf in jax.tree.leaves(abstract))
                return self.restore(step, abstract if placed else init_fn())
            except Exception as e:
                self.skipped[step] = _short(e)
        raise NoReadableCheckpointError(self.directory, self.skipped)

    def quarantine(self) -> list[str]:
        """Moves the checkpoints `restore_or_init` skipped to `<directory>_damaged/<step>` (kept for inspection,
        and out of the way of the resumed run, which will save those steps again); returns the new paths."""
        moved = []
        for step in sorted(self.skipped):
            source = self.directory / str(step)
            if source.exists():
                target = self.directory.parent / f"{self.directory.name}_damaged" / str(step)
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.exists():  # damaged twice at the same step: keep both
                    target = target.parent / f"{step}.{len(list(target.parent.iterdir()))}"
                source.rename(target)
                moved.append(str(target))
        self._manager.reload()
        return moved

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
