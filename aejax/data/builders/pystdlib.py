"""`pystdlib`: the Python standard library's own source, as bytes, cut into windows for a byte-level LM.

A text corpus every machine with Python has, so the language model of issue 20 trains offline. The builder reads
the `.py` files under the running interpreter's stdlib directory (`sysconfig.get_paths()["stdlib"]`), walked
recursively in sorted order of their relative paths, skipping:
- `site-packages/` (installed third-party code, which differs between machines, not the standard library), and
- the test suites (`test/`, `tests/`, `idle_test/` directories): two thirds of the bytes, mostly assert
  boilerplate and deliberately malformed files (bad syntax, bad encodings) written to break parsers.

A file goes to "test" when the first 8 bytes of sha256(relative path) read as an integer fall in the lowest
TEST_PERCENT percent (deterministic, ~5% of the files, independent of file order), else to "train". Each split
is its files' bytes concatenated in path order, cut into non-overlapping windows of `window` bytes (the remainder
shorter than a window is dropped); a window may span the end of one file and the start of the next. Records:
"tokens" uint8 [T] (byte values 0..255). The Python version and a sha256 of the corpus (`corpus_sha256`) are
stored in the dataset's metadata (`corpus_info`).

Configs: "full" (default; every library file, about 11.6 MB on CPython 3.12) and "tiny" (the first files in path
order until train holds TINY_TRAIN_BYTES and test TINY_TEST_BYTES; for tests and `runlocal`).
"""

import dataclasses
import hashlib
import os
import pathlib
import sys
import sysconfig

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

TEST_PERCENT = 5
SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"})
TINY_TRAIN_BYTES = 256 * 1024
TINY_TEST_BYTES = 32 * 1024


def stdlib_root() -> pathlib.Path:
    """The running interpreter's stdlib directory."""
    return pathlib.Path(sysconfig.get_paths()["stdlib"])


def source_files(root: str | os.PathLike | None = None) -> list[str]:
    """The corpus's files: relative paths (POSIX separators) of the `.py` files under `root` (default: the
    stdlib), sorted, outside SKIP_DIRS.

    Raises:
      FileNotFoundError: if `root` is not a directory or holds no `.py` file.
    """
    root = pathlib.Path(root or stdlib_root())
    if not root.is_dir():
        raise FileNotFoundError(f"pystdlib: {root} is not a directory.")
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in SKIP_DIRS]
        out += [pathlib.Path(d, f).relative_to(root).as_posix() for f in files if f.endswith(".py")]
    if not out:
        raise FileNotFoundError(f"pystdlib: no .py file under {root}.")
    return sorted(out)


def is_test_file(relpath: str) -> bool:
    """True for the held-out files: sha256(relpath)[:8] as a big-endian integer, mod 100, < TEST_PERCENT."""
    digest = hashlib.sha256(relpath.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100 < TEST_PERCENT


def select_files(paths: list[str], sizes: list[int], tiny: bool) -> dict[str, list[str]]:
    """{"train": [...], "test": [...]} relative paths in order; `tiny` keeps the first files of each split until
    it holds TINY_TRAIN_BYTES (train) or TINY_TEST_BYTES (test)."""
    out, held = {"train": [], "test": []}, {"train": 0, "test": 0}
    cap = {"train": TINY_TRAIN_BYTES, "test": TINY_TEST_BYTES}
    for path, size in zip(paths, sizes, strict=True):
        split = "test" if is_test_file(path) else "train"
        if tiny and held[split] >= cap[split]:
            continue
        out[split].append(path)
        held[split] += size
    return out


def corpus_sha256(root: str | os.PathLike, paths: list[str]) -> str:
    """Hex sha256 of the corpus: for each path in order, its UTF-8 relative path, a NUL byte, its byte length as
    8 big-endian bytes and its bytes (so a renamed or moved file changes the hash as an edited one does)."""
    h = hashlib.sha256()
    for p in paths:
        data = pathlib.Path(root, p).read_bytes()
        h.update(p.encode("utf-8") + b"\0" + len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def windows(root: str | os.PathLike, paths: list[str], window: int) -> np.ndarray:
    """[N, window] uint8: the files' bytes concatenated in order, cut into non-overlapping windows (the remainder
    shorter than a window dropped).

    Raises:
      ValueError: if window < 2 or the files hold fewer than `window` bytes.
    """
    if window < 2:
        raise ValueError(f"window must be >= 2 bytes, got {window}.")
    stream = np.frombuffer(b"".join(pathlib.Path(root, p).read_bytes() for p in paths), np.uint8)
    n = len(stream) // window
    if n == 0:
        raise ValueError(f"pystdlib: {len(stream)} bytes cannot fill one window of {window}.")
    return stream[: n * window].reshape(n, window)


@dataclasses.dataclass(eq=False)
class PyStdlibConfig(tfds.core.BuilderConfig):
    """Attributes: window: T, bytes per record; tiny: keep only the first files (see `select_files`)."""

    window: int = 128
    tiny: bool = False


class Pystdlib(tfds.core.GeneratorBasedBuilder):
    """The running Python's standard library source (.py, tests and site-packages excluded) as uint8 "tokens"
    windows [T]; held-out files form "test". Metadata: python_version, corpus_sha256, files and bytes per split."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Windows of 128 bytes; 5% of the files (by path hash) held out."}
    BUILDER_CONFIGS = [
        PyStdlibConfig(name="full", description="Every library .py file of the stdlib."),
        PyStdlibConfig(name="tiny", tiny=True, description="The first ~256 KB train / ~32 KB test files."),
    ]
    DEFAULT_CONFIG_NAME = "full"
    code_path = epath.Path(__file__)  # see _common.DigitImageBuilder

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {"tokens": tfds.features.Tensor(shape=(self.builder_config.window,), dtype=np.uint8)}
            ),
            homepage="https://docs.python.org/3/library/",
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,  # records in window order, so a split reads back as its byte stream
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # The corpus is the interpreter's own.
        cfg, root = self.builder_config, stdlib_root()
        paths = source_files(root)
        files = select_files(paths, [(root / p).stat().st_size for p in paths], cfg.tiny)
        meta = self.info.metadata
        meta["python_version"] = sys.version.split()[0]
        meta["python_implementation"] = sys.implementation.name
        meta["stdlib"] = str(root)
        meta["corpus_sha256"] = corpus_sha256(root, files["train"] + files["test"])
        for split, chosen in files.items():
            meta[f"{split}_files"] = len(chosen)
            meta[f"{split}_bytes"] = sum((root / p).stat().st_size for p in chosen)
        return {split: self._generate_examples(root, chosen) for split, chosen in files.items()}

    def _generate_examples(self, root, paths):
        for i, w in enumerate(windows(root, paths, self.builder_config.window)):  # key: window index
            yield i, {"tokens": w}


def corpus_info(config: str = "full", data_dir: str | None = None) -> dict:
    """The metadata of the prepared corpus (preparing it if needed): {"python_version", "python_implementation",
    "stdlib", "corpus_sha256", "train_files", "test_files", "train_bytes", "test_bytes"}: the interpreter and
    corpus the data was built from, which may differ from the running one when data_dir was prepared
    elsewhere."""
    from aejax.data import datasets  # here, not at the top: datasets imports the builders package

    cls = tfds.builder_cls("pystdlib")
    builder = datasets.prepare(lambda: cls(config=config, data_dir=data_dir, file_format="array_record"))
    return dict(builder.info.metadata)
