"""Class filters: train on some classes of a labelled dataset only (`config.train_classes`).

The one-class protocol of anomaly detection (e.g. Ruff et al. 2018, Deep SVDD) trains on the images of one digit
("normal") and scores the whole test split, where every other digit is an anomaly. `config.train_classes = "3"`
(or "1,7") keeps only those classes of the training split; the test split is never filtered. "" keeps all.
"""

import numpy as np

from aejax.data.datasets import Split


def parse_classes(spec: str) -> tuple[int, ...]:
    """ "1,7" -> (1, 7); "" or "all" -> () (all classes). Whitespace is ignored; duplicates are dropped.

    Raises:
      ValueError: for an entry that is not an integer, naming it.
    """
    spec = (spec or "").strip()
    if spec.lower() in ("", "all"):
        return ()
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            out.append(int(part))
        except ValueError:
            raise ValueError(f"train_classes={spec!r}: {part!r} is not a class label (an integer).") from None
    return tuple(sorted(set(out)))


def select_classes(split: Split, classes: tuple[int, ...]) -> Split:
    """The examples of `split` whose label is in `classes` (all of them when `classes` is empty), in order.

    Args:
      split: a Split with labels [N].
      classes: class labels to keep.

    Returns:
      A Split with x, labels (and mask) restricted to those rows.

    Raises:
      ValueError: if a class does not occur in the split's labels (the message lists the ones that do).
    """
    if not classes:
        return split
    present = set(np.unique(split.labels).tolist())
    missing = [c for c in classes if c not in present]
    if missing:
        raise ValueError(f"train_classes {missing} do not occur in the data; its classes are {sorted(present)}.")
    keep = np.isin(split.labels, np.asarray(classes))
    mask = None if split.mask is None else split.mask[keep]
    return split._replace(x=split.x[keep], labels=split.labels[keep], mask=mask)
