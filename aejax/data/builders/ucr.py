"""`ucr`: UCR/UEA classification sets that aeon ships, as `[T, C]` float32 series with a class label and length.

Configs (`load_split("ucr/GunPoint", split)`): GunPoint, ArrowHead, ItalyPowerDemand, OSULeaf (univariate),
BasicMotions (6 channels) and JapaneseVowels (12 channels, variable length 7..29). The official train / test
splits of the archive (Dau et al. 2019; Bagnall et al. 2018) are kept as they are; nothing is resampled.

Each record: "series" [T, C] float32 with T the longest series of the set (shorter series are zero-padded after
their end), "length" the valid steps, and "label" the index of the class name in sorted order (`CLASSES`). The
values are the archive's (already z-normalised per series in the univariate sets); aejax normalises them again
with statistics of the train split only (`aejax.data.series`).
"""

import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds
from etils import epath


@dataclasses.dataclass(eq=False)
class UcrConfig(tfds.core.BuilderConfig):
    """One UCR set.

    Attributes:
      channels: C, the number of dimensions.
      max_length: T, the longest series of both splits (the stored length of every record).
      classes: the class names as the .ts file writes them, in label order.
    """

    channels: int = 1
    max_length: int = 1
    classes: tuple[str, ...] = ()


SETS = {
    "GunPoint": (1, 150, ("1", "2")),
    "ArrowHead": (1, 251, ("0", "1", "2")),
    "ItalyPowerDemand": (1, 24, ("1", "2")),
    "OSULeaf": (1, 427, ("1", "2", "3", "4", "5", "6")),
    "BasicMotions": (6, 100, ("badminton", "running", "standing", "walking")),
    "JapaneseVowels": (12, 29, tuple(str(i) for i in range(1, 10))),
}


def ts_path(name: str, split: str) -> pathlib.Path:
    """Path of aeon's bundled `<name>_<SPLIT>.ts` (found without importing aeon's loaders).

    Raises:
      FileNotFoundError: if aeon is not installed or does not ship the file.
    """
    import importlib.util

    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("ucr needs the `aeon` package (pip install aeon).")
    path = (
        pathlib.Path(spec.submodule_search_locations[0])
        / "datasets"
        / "data"
        / name
        / f"{name}_{split.upper()}.ts"
    )
    if not path.is_file():
        raise FileNotFoundError(f"ucr/{name}: {path} not found; reinstall aeon.")
    return path


def read_set(name: str, split: str, max_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads one split of a bundled set.

    Returns:
      series: [N, max_length, C] float32, zero after each series' length.
      lengths: [N] int32 valid steps.
      labels: [N] the class names (str).

    Raises:
      ValueError: if a series is longer than `max_length` or holds a missing value (NaN).
    """
    from aeon.datasets import load_from_ts_file

    x, y = load_from_ts_file(str(ts_path(name, split)))  # [N, C, T] array, or a list of [C, T_i]
    out, lengths = [], []
    for s in x:
        s = np.asarray(s, np.float32).T  # [T_i, C]
        if len(s) > max_length or np.isnan(s).any():
            raise ValueError(f"ucr/{name} {split}: a series of length {len(s)} (max {max_length}) or with NaNs.")
        out.append(np.pad(s, ((0, max_length - len(s)), (0, 0))))
        lengths.append(len(s))
    return np.stack(out), np.asarray(lengths, np.int32), np.asarray(y)


class Ucr(tfds.core.GeneratorBasedBuilder):
    """UCR/UEA classification sets bundled with aeon: "series" [T, C] float32, "length", "label"."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "The archive's train / test splits; zero padding after each series' length."}
    BUILDER_CONFIGS = [
        UcrConfig(name=name, channels=c, max_length=t, classes=k, description=f"{name}: C={c}, T<={t}")
        for name, (c, t, k) in SETS.items()
    ]
    code_path = epath.Path(__file__)  # see _common.DigitImageBuilder

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=type(self).__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "series": tfds.features.Tensor(shape=(cfg.max_length, cfg.channels), dtype=np.float32),
                    "length": tfds.features.Tensor(shape=(), dtype=np.int32),
                    "label": tfds.features.ClassLabel(names=list(cfg.classes)),
                }
            ),
            supervised_keys=("series", "label"),
            homepage="https://www.timeseriesclassification.com",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # The data ships with aeon.
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split):
        cfg = self.builder_config
        series, lengths, names = read_set(cfg.name, split, cfg.max_length)
        index = {c: i for i, c in enumerate(cfg.classes)}
        for i in range(len(series)):  # keys: the row of the .ts file
            yield i, {"series": series[i], "length": lengths[i], "label": index[str(names[i])]}
