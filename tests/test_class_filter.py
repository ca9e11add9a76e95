"""The train-class filter (`config.train_classes`, aejax.data.classes): exactly the chosen classes of the train
split, the test split whole, a clear error for a class the data does not have."""

import numpy as np
import pytest

from aejax import build
from aejax.data import classes
from aejax.data.datasets import Split
from configs import mnist_ae


def _split():
    labels = np.array([0, 1, 2, 1, 7, 0, 7, 3], np.int32)
    return Split(x=np.arange(len(labels) * 4, dtype=np.float32).reshape(-1, 2, 2), labels=labels, kind="image")


@pytest.mark.parametrize(("spec", "want"), [("", ()), ("all", ()), ("3", (3,)), (" 7, 1 ,7", (1, 7))])
def test_parse_classes(spec, want):
    assert classes.parse_classes(spec) == want


def test_parse_classes_rejects_a_non_integer():
    with pytest.raises(ValueError, match="'x' is not a class label"):
        classes.parse_classes("1,x")


def test_select_classes_keeps_exactly_the_chosen_rows_in_order():
    split = _split()
    out = classes.select_classes(split, (1, 7))
    rows = [i for i, y in enumerate(split.labels) if y in (1, 7)]
    np.testing.assert_array_equal(out.labels, split.labels[rows])
    np.testing.assert_array_equal(out.x, split.x[rows])
    assert classes.select_classes(split, ()) is split


def test_select_classes_names_an_unknown_class_and_the_known_ones():
    with pytest.raises(ValueError, match=r"\[5\] do not occur in the data; its classes are \[0, 1, 2, 3, 7\]"):
        classes.select_classes(_split(), (1, 5))


def test_load_data_filters_the_train_split_only(tmp_path):
    config = mnist_ae.get_config("runlocal")
    config.data_dir = str(tmp_path)
    full_train, full_test = build.load_data(config)
    config.train_classes = "3,8"
    train_split, test_split = build.load_data(config)
    assert set(np.unique(train_split.labels)) == {3, 8}
    assert len(train_split.labels) == int(np.isin(full_train.labels, [3, 8]).sum())
    np.testing.assert_array_equal(train_split.x, full_train.x[np.isin(full_train.labels, [3, 8])])
    np.testing.assert_array_equal(test_split.labels, full_test.labels)  # the test split is not filtered
    config.train_classes = "10"
    with pytest.raises(ValueError, match="train_classes \\[10\\] do not occur"):
        build.load_data(config)
