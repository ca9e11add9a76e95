"""Autoencoder models, one family per module, found by module name (no central table).

`get_model("mlp", **kwargs)` imports `aejax.models.mlp` and builds its `Model` class. Adding a family is adding
a module that defines `Model`, a subclass of `AbstractAutoencoder`.
"""

import importlib
import pkgutil

from aejax.models.base import AbstractAutoencoder

__all__ = ["AbstractAutoencoder", "get_model", "known_models"]

_NOT_MODELS = {"base", "layers"}


def known_models() -> list[str]:
    """Names of the model modules in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_MODELS and not m.ispkg)


def get_model(name: str, **kwargs) -> AbstractAutoencoder:
    """Builds `aejax.models.<name>.Model(**kwargs)`.

    Raises:
      KeyError: if no such model module exists; the message lists the known names.
    """
    if name not in known_models():
        raise KeyError(f"Unknown model {name!r}. Known models: {', '.join(known_models())}.")
    module = importlib.import_module(f"aejax.models.{name}")
    return module.Model(**kwargs)
