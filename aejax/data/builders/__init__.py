"""TFDS builders for the datasets aejax bundles (no TensorFlow, no network).

One module per dataset; the module name is the dataset name, and importing the module registers its
`tfds.core.GeneratorBasedBuilder` under that name. Modules whose name starts with `_` are helpers.
`aejax.data.datasets.BUNDLED` is discovered from this package, so adding a dataset is adding one
file.
"""
