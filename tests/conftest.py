"""Test setup: several simulated CPU devices and strict numerics, before JAX is first used."""

import os

# Forced, not defaulted: the tests need NUM_DEVICES simulated CPU devices whatever the machine's environment
# says (with JAX_PLATFORMS=cuda set, a default would give one GPU and break the multi-device tests). Set in the
# environment for the launch.py subprocesses, and in jax.config in case a plugin imported jax before this file.
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

NUM_DEVICES = 4
jax.config.update("jax_platforms", "cpu")
jax.config.update("jax_num_cpu_devices", NUM_DEVICES)
jax.config.update("jax_numpy_rank_promotion", "raise")
_devices = jax.devices()
assert [d.platform for d in _devices] == ["cpu"] * NUM_DEVICES, f"tests need {NUM_DEVICES} CPU devices: {_devices}"


import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


def check_figure(path, *, min_width: int = 200, min_height: int = 100, min_ink: float = 0.01) -> None:
    """Asserts that `path` is a PNG of at least the given size with drawing on it: at least `min_ink` of its
    pixels differ from the background colour (an empty or failed figure is all background)."""
    with Image.open(path) as img:
        assert img.format == "PNG", f"{path} is not a PNG"
        rgb = np.asarray(img.convert("RGB"), np.int16)
    height, width = rgb.shape[:2]
    assert width >= min_width and height >= min_height, f"{path} is only {width}x{height}"
    background = rgb[0, 0]
    ink = np.mean(np.any(np.abs(rgb - background) > 16, axis=-1))
    assert ink >= min_ink, f"{path}: only {ink:.2%} of the pixels are drawn on"


@pytest.fixture
def assert_figure():
    """`assert_figure(path, **limits)`: see `check_figure`."""
    return check_figure


class _TrainStepKiller:
    """Makes the one-step train steps built from now on raise KeyboardInterrupt on their (n + 1)-th call, as if the
    process were killed after step n; `disarm` restores the real step factory."""

    def __init__(self, monkeypatch):
        from aejax import train_step

        self._monkeypatch, self._module, self._real = monkeypatch, train_step, train_step.make_train_step

    def arm(self, n: int) -> None:
        real = self._real

        def dying_step_factory(*args, **kwargs):
            step_fn, calls = real(*args, **kwargs), []

            def step(state, batch):
                calls.append(1)
                if len(calls) > n:
                    raise KeyboardInterrupt
                return step_fn(state, batch)

            return step

        self._monkeypatch.setattr(self._module, "make_train_step", dying_step_factory)

    def disarm(self) -> None:
        self._monkeypatch.setattr(self._module, "make_train_step", self._real)


@pytest.fixture
def train_step_killer(monkeypatch):
    """`train_step_killer.arm(n)`: one-step train steps die after n steps; `.disarm()` undoes it."""
    return _TrainStepKiller(monkeypatch)
