"""`kdd_tsad_135`: the UCR anomaly series 135, InternalBleeding16 (a patient's heart rate), that aeon ships.

Keogh et al. (2021), the KDD Cup 2021 multi-dataset anomaly competition: 7,501 points, one labelled anomaly of
12 points (indices 4,187..4,198), and a normal training prefix of 1,200 points (the file name's "1200").

Splits, one record each: "train" the normal prefix (points 0..1,199) and "test" the whole series (points
0..7,500, the prefix included, as the archive gives it; scores are reported on the points after the prefix).
Each record: "series" [T, 1] float32, "anomaly" [T] int32 0/1 per point, "length" T.
"""

import pathlib

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

TRAIN_LENGTH = 1200
_FILE = "135_UCR_Anomaly_InternalBleeding16_{split}.csv"


def csv_path(split: str) -> pathlib.Path:
    """Path of aeon's bundled CSV of `split` ("train" or "test").

    Raises:
      FileNotFoundError: if aeon is not installed or does not ship the file.
    """
    import importlib.util

    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("kdd_tsad_135 needs the `aeon` package (pip install aeon).")
    path = pathlib.Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "KDD-TSAD_135"
    path = path / _FILE.format(split=split.upper())
    if not path.is_file():
        raise FileNotFoundError(f"kdd_tsad_135: {path} not found; reinstall aeon.")
    return path


def read_series(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads a split: (values [T] float32, anomaly [T] int32 0/1), the CSV's "value" and "is_anomaly" columns."""
    import pandas as pd

    table = pd.read_csv(csv_path(split))
    return table["value"].to_numpy(np.float32), table["is_anomaly"].to_numpy(np.int32)


class KddTsad135(tfds.core.GeneratorBasedBuilder):
    """UCR anomaly archive series 135 (InternalBleeding16): normal prefix "train", whole series "test"."""

    name = "kdd_tsad_135"  # TFDS would derive "kdd_tsad135" from the class name
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "aeon's two CSV files, one record per split."}
    code_path = epath.Path(__file__)  # see _common.DigitImageBuilder

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=type(self).__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "series": tfds.features.Tensor(shape=(None, 1), dtype=np.float32),
                    "anomaly": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "length": tfds.features.Tensor(shape=(), dtype=np.int32),
                }
            ),
            homepage="https://www.cs.ucr.edu/~eamonn/time_series_data_2018/UCR_TimeSeriesAnomalyDatasets2021.zip",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # The data ships with aeon.
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split):
        values, anomaly = read_series(split)
        yield 0, {"series": values[:, None], "anomaly": anomaly, "length": np.int32(len(values))}
