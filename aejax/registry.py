"""One registry style for every extensible kind (models, objectives, likelihoods, corruptions, regularizers,
reports): a decorator that registers a name, a lookup whose error lists the known names, and a package import
that makes adding a file the whole change (no central table, unlike scenic's `ALL_MODELS`).

    MODELS = Registry("model", package="aejax.models")

    @MODELS.register("mlp")      # in aejax/models/mlp.py
    class Model(AbstractAutoencoder): ...

    MODELS.get("mlp")            # imports every module of aejax.models once, then looks the name up
"""

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any


class Registry:
    """Names -> objects of one kind.

    Args:
      kind: what is registered, for messages ("model", "regularizer", ...).
      package: dotted name of a package whose modules register themselves; they are imported on the first
        lookup (modules whose name starts with "_" are helpers and are skipped), so importing the registry is
        cheap and an entry's module never has to be named anywhere else.
    """

    def __init__(self, kind: str, *, package: str | None = None):
        self.kind = kind
        self._package = package
        self._entries: dict[str, Any] = {}
        self._imported = package is None

    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: registers its argument under `name` and returns it unchanged.

        Raises:
          ValueError: if `name` is already registered (two files claiming one name is a bug).
        """

        def decorator(obj):
            if name in self._entries:
                owner = getattr(self._entries[name], "__module__", "?")
                raise ValueError(f"{self.kind.capitalize()} {name!r} is already registered (by {owner}).")
            self._entries[name] = obj
            return obj

        return decorator

    def _import_package(self) -> None:
        if self._imported:
            return
        self._imported = True
        package = importlib.import_module(self._package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{self._package}.{module.name}")

    def get(self, name: str) -> Any:
        """The object registered under `name`.

        Raises:
          KeyError: for an unknown name; the message lists the known names.
        """
        self._import_package()
        if name not in self._entries:
            raise KeyError(f"Unknown {self.kind} {name!r}. Known {self.kind}s: {', '.join(self.known())}.")
        return self._entries[name]

    def known(self) -> list[str]:
        """Sorted registered names."""
        self._import_package()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._import_package()
        return name in self._entries
