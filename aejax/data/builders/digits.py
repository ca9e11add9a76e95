"""`digits`: scikit-learn's 1,797 real 8x8 digits (UCI optdigits), split 1,437 train / 360 test.

sklearn stores gray levels 0..16; they are stored here as round(v * 255 / 16) in 0..255, so pixels
mean the same in every bundled builder (and [0, 1] after the loader's /255). The split is
stratified and seeded (20% test).
"""

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from aejax.data.builders import _common

TEST_FRACTION = 0.2
_SIDE = 8


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """Reads sklearn's digits and rescales them to 0..255.

    Returns:
      images: [1797, 8, 8, 1] uint8, round(v * 255 / 16).
      labels: [1797] int64 in 0..9.
    """
    from sklearn.datasets import load_digits  # slow import, only needed when preparing

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, bunch.target.astype(np.int64)


class Digits(_common.DigitImageBuilder):
    """sklearn `load_digits`, 8x8x1 uint8 in 0..255, 1,437 train / 360 test."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = epath.Path(__file__)  # see _common.DigitImageBuilder
    SIDE = _SIDE
    HOMEPAGE = "https://archive.ics.uci.edu/dataset/80"
    RELEASE_NOTES = {"1.0.0": "Stratified split 80% / 20%, seed 0; pixels round(v * 255 / 16)."}

    def _split_generators(self, dl_manager):
        del dl_manager  # The data ships with scikit-learn.
        images, labels = read_digits()
        train, test = _common.stratified_split(labels, test_size=TEST_FRACTION)
        return {
            "train": self._generate_examples(images, labels, train),
            "test": self._generate_examples(images, labels, test),
        }

    def _generate_examples(self, images, labels, indices):
        for i in indices:
            yield int(i), {"image": images[i], "label": int(labels[i])}
