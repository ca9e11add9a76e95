"""`mnist_idx`: full MNIST (60,000 train / 10,000 test) from the four IDX files on your disk.

A manual-download builder: nothing is downloaded. It reads, from the TFDS manual directory
(`<data_dir>/downloads/manual/` by default, or `DownloadConfig(manual_dir=...)`; in aejax
`load_split("mnist_idx", ..., manual_dir=...)`), the files `train-images-idx3-ubyte`,
`train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each plain or
gzipped (`.gz`). The IDX parser is written here (LeCun's format description on the MNIST page).
"""

import gzip
import struct

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from aejax.data.builders import _common

_SIDE = 28
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
INSTRUCTIONS = """\
Put the four MNIST IDX files (plain or .gz) in the TFDS manual directory, which is
`<data_dir>/downloads/manual/` unless you pass another one (aejax:
`load_split("mnist_idx", split, manual_dir=DIR)`; TFDS:
`download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=DIR))`):
  train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
  t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]
They are the files published with MNIST (http://yann.lecun.com/exdb/mnist/ and its mirrors, e.g.
https://ossci-datasets.s3.amazonaws.com/mnist/).
"""

# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes) -> np.ndarray:
    """Parses one IDX file: magic `00 00 <type> <ndim>`, ndim big-endian uint32 dims, then data.

    Args:
      data: the file's bytes (already gunzipped).

    Returns:
      The array, shape = the header's dims, native byte order (uint8 for MNIST, type 0x08).

    Raises:
      ValueError: on a bad magic number, unknown type code, zero dims, or when the file is
        truncated or longer than its header says.
    """
    if len(data) < 4:
        raise ValueError(f"IDX: truncated header ({len(data)} bytes, need at least 4).")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"IDX: bad magic number 0x{data[:4].hex()} (must start with 0x0000).")
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"IDX: unknown type code 0x{type_code:02x} (magic 0x{data[:4].hex()}).")
    if ndim == 0:
        raise ValueError("IDX: the header declares 0 dimensions.")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"IDX: truncated header ({len(data)} bytes, need {offset} for {ndim} dims).")
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - offset
    if found != expected:
        kind = "truncated" if found < expected else "too long"
        raise ValueError(f"IDX: file {kind}: shape {shape} needs {expected} data bytes, got {found}.")
    array = np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def read_idx(manual_dir: epath.PathLike, stem: str) -> np.ndarray:
    """Reads `<manual_dir>/<stem>` or `<manual_dir>/<stem>.gz` with `parse_idx`.

    Args:
      manual_dir: directory holding the IDX files.
      stem: file name without `.gz`, e.g. "train-images-idx3-ubyte".

    Returns:
      The parsed array, e.g. [N, 28, 28] uint8 images or [N] uint8 labels.

    Raises:
      FileNotFoundError: if neither exists; the message names the file, the directory and how to
        get the files.
      ValueError: if the file is not valid IDX (the message names the file).
    """
    directory = epath.Path(manual_dir)
    for path in (directory / stem, directory / f"{stem}.gz"):
        if path.exists():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            try:
                return parse_idx(data)
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from e
    raise FileNotFoundError(f"mnist_idx: missing IDX file {stem!r} (or {stem}.gz) in {directory}.\n{INSTRUCTIONS}")


def _manual_dir(dl_manager) -> epath.Path:
    # TFDS raises a bare AssertionError when the manual dir is missing or empty; name our files.
    try:
        return dl_manager.manual_dir
    except AssertionError as e:
        raise FileNotFoundError(
            f"mnist_idx: missing IDX file {FILES['train'][0]!r} (and the other three): {e}"
        ) from e


class MnistIdx(_common.DigitImageBuilder):
    """MNIST from the four standard IDX files (manual download), 28x28x1 uint8."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = epath.Path(__file__)  # see _common.DigitImageBuilder
    SIDE = _SIDE
    HOMEPAGE = "http://yann.lecun.com/exdb/mnist/"
    RELEASE_NOTES = {"1.0.0": "Reads plain or gzipped IDX files from the manual dir."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS

    def _split_generators(self, dl_manager):
        manual_dir = _manual_dir(dl_manager)
        # Read every file before writing anything, so a missing one fails fast.
        arrays = {split: tuple(read_idx(manual_dir, stem) for stem in stems) for split, stems in FILES.items()}
        for split, (images, labels) in arrays.items():
            image_stem, label_stem = FILES[split]
            if images.ndim != 3 or images.shape[1:] != (_SIDE, _SIDE) or images.dtype != np.uint8:
                raise ValueError(
                    f"mnist_idx: {image_stem} holds {images.dtype} {images.shape}, "
                    f"expected uint8 [N, {_SIDE}, {_SIDE}]."
                )
            if labels.shape != (len(images),) or labels.dtype != np.uint8 or np.any(labels > 9):
                raise ValueError(
                    f"mnist_idx: {label_stem} holds {labels.dtype} {labels.shape}, expected "
                    f"uint8 [{len(images)}] in 0..9 to match {image_stem}."
                )
        return {split: self._generate_examples(*arrays[split]) for split in FILES}

    def _generate_examples(self, images, labels):
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield i, {"image": image[..., None], "label": int(label)}
