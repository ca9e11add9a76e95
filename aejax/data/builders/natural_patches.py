"""`natural_patches`: seeded grey-level patches of the natural images bundled with scikit-image and scikit-learn.

Configs (`load_split("natural_patches/12x12", split)`): "8x8", "12x12" (contrast-normalised) and
"8x8_whitened", "12x12_whitened" (ZCA-whitened). The exact pipeline, in this order:

1. Images: scikit-image's camera, astronaut, coffee, chelsea, rocket, grass, gravel and scikit-learn's
   china and flower (`load_sample_images`), converted to grey levels in [0, 1] (`skimage.color.rgb2gray`,
   ITU-R 601 luma weights).
2. Split by region, so train and test patches never overlap: in every image the left 80% of the columns
   give train patches and the right 20% test patches.
3. Sampling: top-left corners uniform over each region (numpy `default_rng(seed)`, seed 0 for train, 1
   for test), the same number of draws per image, 2 * num_<split> in all (doubled until enough pass step 4),
   interleaved across images.
4. Per-patch mean removal, then the variance threshold: a patch whose standard deviation over its pixels
   (grey-level units) is below `min_std` is dropped (flat sky, walls); the first `num_<split>` kept
   patches, in draw order, are stored.
5. "lcn" (local contrast normalisation): each patch divided by sqrt(var + eps_lcn), its pixel variance
   after mean removal, so every stored patch has zero mean and (for var >> eps_lcn) unit pixel variance.
   "zca": x <- (x - mu) V diag(1 / sqrt(lam + eps)) V^T with mu, V, lam the mean and eigendecomposition of
   the covariance of the *train* patches (also applied to test), eps = zca_eps * mean(lam); the train
   covariance becomes V diag(lam / (lam + eps)) V^T, the identity on the directions with lam >> eps
   (the constant direction has lam = 0 after step 4 and stays 0).
6. Stored as float32 [s, s, 1] under "image"; "label" is the index of the source image (see `IMAGES`).

Olshausen & Field (1996) and Kavukcuoglu et al. (2008) use whitened or contrast-normalised natural patches;
Ng's sparse autoencoder exercise uses 8x8 whitened patches.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

SKIMAGE_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "rocket", "grass", "gravel")
SKLEARN_IMAGES = ("china", "flower")
IMAGES = SKIMAGE_IMAGES + SKLEARN_IMAGES
TRAIN_FRACTION = 0.8  # of each image's columns
SEEDS = {"train": 0, "test": 1}


@dataclasses.dataclass(eq=False)
class PatchesConfig(tfds.core.BuilderConfig):
    """One patch set.

    Attributes:
      size: patch side s in pixels.
      preprocessing: "lcn" or "zca" (module docstring, step 5).
      num_train, num_test: patches stored per split.
      min_std: variance threshold, grey levels in [0, 1] (step 4).
      eps_lcn: regulariser of the contrast normalisation, grey levels squared.
      zca_eps: ZCA regulariser relative to the mean eigenvalue of the patch covariance.
    """

    size: int = 12
    preprocessing: str = "lcn"
    num_train: int = 20000
    num_test: int = 2000
    min_std: float = 0.02
    eps_lcn: float = 1e-4
    zca_eps: float = 0.01


def load_images() -> list[np.ndarray]:
    """The source images as grey levels, in the order of `IMAGES`: a list of [H, W] float64 in [0, 1]."""
    import skimage.color
    import skimage.data
    from sklearn.datasets import load_sample_images

    sk = dict(zip(SKLEARN_IMAGES, load_sample_images().images, strict=True))
    out = []
    for name in IMAGES:
        img = sk[name] if name in sk else getattr(skimage.data, name)()
        img = skimage.color.rgb2gray(img) if img.ndim == 3 else img / 255.0
        out.append(np.asarray(img, np.float64))
    return out


def sample_patches(
    images: list[np.ndarray], *, size: int, per_image: int, split: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random patches from each image's split region (step 3).

    Args:
      images: grey images [H, W].
      size: patch side s.
      per_image: patches drawn per image.
      split: "train" (left 80% of columns) or "test" (right 20%).
      seed: numpy seed.

    Returns:
      patches: [len(images) * per_image, s, s] float64; labels: [same] int64 source image index.

    Raises:
      ValueError: for an unknown split, or a region narrower than the patch.
    """
    if split not in SEEDS:
        raise ValueError(f"Unknown split {split!r}; known: {', '.join(SEEDS)}.")
    rng = np.random.default_rng(seed)
    patches, labels = [], []
    for i, img in enumerate(images):
        h, w = img.shape
        cut = int(TRAIN_FRACTION * w)
        lo, hi = (0, cut) if split == "train" else (cut, w)
        if hi - lo < size or h < size:
            raise ValueError(f"Image {i} region {hi - lo}x{h} is smaller than the {size}x{size} patch.")
        rows = rng.integers(0, h - size + 1, per_image)
        cols = rng.integers(lo, hi - size + 1, per_image)
        patches.append(np.stack([img[r : r + size, c : c + size] for r, c in zip(rows, cols, strict=True)]))
        labels.append(np.full(per_image, i, np.int64))
    # Interleave images so that the first N kept patches mix all images.
    order = np.argsort(np.tile(np.arange(per_image), len(images)), kind="stable")
    return np.concatenate(patches)[order], np.concatenate(labels)[order]


def remove_mean(patches: np.ndarray) -> np.ndarray:
    """[N, s, s] -> [N, s, s] with each patch's pixel mean subtracted (step 4)."""
    return patches - patches.mean(axis=(1, 2), keepdims=True)


def contrast_normalize(patches: np.ndarray, eps: float) -> np.ndarray:
    """Local contrast normalisation of zero-mean patches [N, s, s]: x / sqrt(var(x) + eps) (step 5)."""
    return patches / np.sqrt(patches.var(axis=(1, 2), keepdims=True) + eps)


def fit_zca(x: np.ndarray, eps_rel: float) -> tuple[np.ndarray, np.ndarray]:
    """ZCA whitening fitted on rows x [N, n]: returns (mean [n], W [n, n]) with x_white = (x - mean) W.

    W = V diag(1 / sqrt(lam + eps)) V^T, eps = eps_rel * mean(lam), from the covariance's eigendecomposition
    (Bell & Sejnowski 1997). Symmetric, so whitened patches stay images.
    """
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False, bias=True)
    lam, v = np.linalg.eigh(cov)
    lam = np.maximum(lam, 0.0)
    eps = eps_rel * lam.mean()
    return mean, (v / np.sqrt(lam + eps)) @ v.T


def _kept(images, config: PatchesConfig, split: str, num: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps 3-4: [num, s, s] zero-mean patches above the variance threshold, and their labels."""
    per_image = int(np.ceil(2 * num / len(images)))  # start at 2x; doubled until enough pass
    while True:
        raw, labels = sample_patches(images, size=config.size, per_image=per_image, split=split, seed=SEEDS[split])
        centred = remove_mean(raw)
        keep = centred.std(axis=(1, 2)) >= config.min_std
        if keep.sum() >= num:
            return centred[keep][:num], labels[keep][:num]
        per_image *= 2


def make_splits(config: PatchesConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The whole pipeline (steps 1-6): {"train"/"test": (patches [N, s, s, 1] float32, labels [N] int64)}.

    Raises:
      ValueError: for an unknown `config.preprocessing`.
    """
    if config.preprocessing not in ("lcn", "zca"):
        raise ValueError(f"Unknown preprocessing {config.preprocessing!r}; known: lcn, zca.")
    images = load_images()
    kept = {s: _kept(images, config, s, getattr(config, f"num_{s}")) for s in SEEDS}
    out = {}
    if config.preprocessing == "zca":
        n = config.size**2
        mean, w = fit_zca(kept["train"][0].reshape(-1, n), config.zca_eps)
    for split, (patches, labels) in kept.items():
        if config.preprocessing == "lcn":
            x = contrast_normalize(patches, config.eps_lcn)
        else:
            x = ((patches.reshape(len(patches), -1) - mean) @ w).reshape(patches.shape)
        out[split] = (x[..., None].astype(np.float32), labels)
    return out


def _config(size: int, preprocessing: str) -> PatchesConfig:
    suffix = "" if preprocessing == "lcn" else "_whitened"
    how = "contrast-normalised" if preprocessing == "lcn" else "ZCA-whitened"
    return PatchesConfig(
        name=f"{size}x{size}{suffix}",
        description=f"{size}x{size} {how} patches",
        size=size,
        preprocessing=preprocessing,
    )


class NaturalPatches(tfds.core.GeneratorBasedBuilder):
    """Natural image patches, [s, s, 1] float32, 20,000 train / 2,000 test from disjoint image regions."""

    VERSION = tfds.core.Version("1.0.0")
    # TFDS 4.9.10 finds this file via the `importlib_resources` backport (absent on 3.12).
    code_path = epath.Path(__file__)
    RELEASE_NOTES = {"1.0.0": "Nine bundled images; LCN or ZCA; min_std 0.02; seeds 0 / 1."}
    BUILDER_CONFIGS = [_config(s, p) for p in ("lcn", "zca") for s in (8, 12)]
    DEFAULT_CONFIG_NAME = "12x12"

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.builder_config.size
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(s, s, 1), dtype=np.float32),
                    "label": tfds.features.ClassLabel(names=IMAGES),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://scikit-image.org/docs/stable/api/skimage.data.html",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # The images ship with scikit-image and scikit-learn.
        splits = make_splits(self.builder_config)
        return {split: self._generate_examples(*arrays) for split, arrays in splits.items()}

    def _generate_examples(self, patches, labels):
        for i, (patch, label) in enumerate(zip(patches, labels, strict=True)):
            yield i, {"image": patch, "label": int(label)}
