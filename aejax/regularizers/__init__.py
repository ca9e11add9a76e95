"""Regularizers: one per module, registered by decorator; the registry imports every module of this package.

    from aejax import regularizers
    regularizers.known()  # ['contractive', 'contractive_higher_order', 'kl_sparsity', ...]
    fn = regularizers.get("contractive")
    penalty = regularizers.combine(regularizers.Term("contractive", 0.1, {"method": "auto"}))

Adding `aejax/regularizers/my_penalty.py` with `@register("my_penalty")` is the whole change (no
central table).
"""

from aejax.regularizers.registry import REGULARIZERS, Regularizer, get, known, register
from aejax.regularizers.terms import Term, combine

__all__ = ["REGULARIZERS", "Regularizer", "Term", "combine", "get", "known", "register"]
