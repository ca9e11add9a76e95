"""Pieces shared by the bundled builders: the feature spec, the seeded stratified split and the digit-builder
base class."""

import numpy as np
import tensorflow_datasets as tfds

# One seed for every bundled split, so train/test never change between machines or versions.
SPLIT_SEED = 0
NUM_CLASSES = 10


def image_features(height: int, width: int) -> tfds.features.FeaturesDict:
    """Features of a grayscale digit: `image` [H, W, 1] uint8 in 0..255 and a 10-way `label`.

    `tfds.features.Tensor` rather than `tfds.features.Image`: Image encodes PNG through TensorFlow,
    which aejax does not need.

    Args:
      height: image height H in pixels.
      width: image width W in pixels.

    Returns:
      The `FeaturesDict` for `tfds.core.DatasetInfo`.
    """
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(shape=(height, width, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }
    )


def stratified_split(
    labels: np.ndarray, *, test_size: int | float, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified train/test split of example indices (sklearn `train_test_split`).

    Args:
      labels: [N] integer class labels.
      test_size: number (int) or fraction (float) of test examples.
      seed: `random_state` of the split.

    Returns:
      (train_indices, test_indices), each sorted, disjoint, together `arange(N)`.
    """
    # Imported here: sklearn takes seconds to import and is only needed when preparing.
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(test)


class DigitImageBuilder(tfds.core.GeneratorBasedBuilder):
    """Base of the grayscale digit builders: `image` [SIDE, SIDE, 1] uint8 and a 10-way `label`.

    Subclasses set `SIDE`, `HOMEPAGE`, `VERSION` and their own `code_path = epath.Path(__file__)` (TFDS 4.9.10
    finds a builder's files through it; the `importlib_resources` backport it would use is absent on 3.12), and
    implement `_split_generators` / `_generate_examples`. Being abstract, this class is not registered with TFDS.
    """

    SIDE: int
    HOMEPAGE: str

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=type(self).__doc__,
            features=image_features(self.SIDE, self.SIDE),
            supervised_keys=("image", "label"),
            homepage=self.HOMEPAGE,
        )
