"""Checkpoints with orbax's CheckpointManager: periodic and final saves, keep the last N, resume or init.

A checkpoint holds the TrainState (params, optimizer state, step, RNG) and a JSON record of the data position;
the input pipeline is a pure function of the step, so the step is the whole data position.
"""

from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath


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
            item_names=("state", "meta"),
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

    def restore_or_init(self, init_fn: Callable[[], Any]) -> tuple[Any, dict[str, Any] | None]:
        """The latest checkpoint if any (meta included), otherwise `init_fn()` and None."""
        state = init_fn()
        step = self.latest_step()
        if step is None:
            return state, None
        return self.restore(step, state)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
