"""Data: bundled TFDS builders (no TensorFlow), whole splits in memory, resumable loaders."""

from aejax.data.batch import Batch
from aejax.data.datasets import BUNDLED, Split, load_split
from aejax.data.pipeline import AbstractLoader, GrainLoader, InMemoryLoader, eval_batches

__all__ = [
    "BUNDLED",
    "AbstractLoader",
    "Batch",
    "GrainLoader",
    "InMemoryLoader",
    "Split",
    "eval_batches",
    "load_split",
]
