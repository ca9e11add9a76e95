"""Regularizers: one per module, registered by decorator; this package imports all its modules.

    from aejax import regularizers
    regularizers.known()  # ['contractive', 'contractive_higher_order', 'kl_sparsity', ...]
    fn = regularizers.get("contractive")
    penalty = regularizers.combine(regularizers.Term("contractive", 0.1, {"method": "auto"}))

Adding `aejax/regularizers/my_penalty.py` with `@register("my_penalty")` is the whole change (no
central table).
"""

import importlib
import pkgutil

from aejax.regularizers.registry import MODEL_INPUT_KEY, get, known, model_input, register
from aejax.regularizers.terms import Term, combine

__all__ = ["MODEL_INPUT_KEY", "Term", "combine", "get", "known", "model_input", "register"]

_NOT_REGULARIZERS = {"registry", "terms"}

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_REGULARIZERS:
        importlib.import_module(f"{__name__}.{_module.name}")
