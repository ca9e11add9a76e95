"""Autoencoder models, one family per module, each registered by name (`aejax.registry`).

`get_model("mlp", **kwargs)` builds the class that `aejax/models/mlp.py` registered with `@MODELS.register("mlp")`.
Adding a family is adding a module that registers a subclass of `AbstractAutoencoder`; no table to edit.
"""

from aejax.models.base import AbstractAutoencoder, AutoencoderOutput
from aejax.registry import Registry

__all__ = ["MODELS", "AbstractAutoencoder", "AutoencoderOutput", "get_model"]

MODELS = Registry("model", package=__name__)


def get_model(name: str, **kwargs) -> AbstractAutoencoder:
    """Builds the model registered under `name` with `kwargs` (its attributes).

    Raises:
      KeyError: if no such model is registered; the message lists the known names.
    """
    return MODELS.get(name)(**kwargs)
