"""Weighted regularizer terms composed into one penalty, like `optax.chain` composes transforms.

    penalty = combine(Term("contractive", 0.1, {}), Term("kl_sparsity", warmup, {"rho": 0.05}))
    total, logs = penalty(step=step, params=params, apply_fn=model.apply, batch=batch,
                          outputs=outputs, rng=rng)
    # total [], logs {"reg/contractive": [], "reg/kl_sparsity": []}

The total is sum_i weight_i(step) * value_i; the logged values are unweighted, so curves stay
comparable when a weight is annealed (a KL or sparsity warm-up is an `optax` schedule).
"""

import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from aejax.data.batch import Batch
from aejax.models.base import AutoencoderOutput
from aejax.regularizers import registry

_CONTRACT_ARGS = ("params", "apply_fn", "batch", "outputs", "rng")


class Term(NamedTuple):
    """One weighted regularizer.

    Attributes:
      name: registry name; the function is looked up with `registry.get(name)`.
      weight: a float (lambda, beta, gamma, ...) or an `optax.Schedule` step -> weight.
      hparams: keyword hyperparameters of the regularizer, Python values closed over by the penalty.
    """

    name: str
    weight: float | optax.Schedule = 1.0
    hparams: Mapping[str, Any] = MappingProxyType({})


Penalty = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


def _check_hparams(term: Term, fn: Callable[..., jax.Array]) -> None:
    """Fails at build time, not inside a jitted step, when a hyperparameter name is misspelt."""
    sig = inspect.signature(fn)
    clash = set(term.hparams) & set(_CONTRACT_ARGS)
    if clash:
        raise ValueError(f"Term {term.name!r}: hparams may not set contract arguments {sorted(clash)}.")
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    unknown = set(term.hparams) - set(sig.parameters)
    if unknown and not takes_any:
        allowed = sorted(set(sig.parameters) - set(_CONTRACT_ARGS))
        raise TypeError(f"Term {term.name!r}: unknown hparams {sorted(unknown)}; it accepts {allowed}.")


def combine(*terms: Term) -> Penalty:
    """Composes terms into one penalty function.

    Args:
      *terms: the terms; names must be distinct (they key the logs).

    Returns:
      `penalty(*, step, params, apply_fn, batch, outputs, rng) -> (total, logs)`: `total` [] =
      sum_i weight_i(step) * value_i (0.0 with no terms), `logs` {"reg/<name>": unweighted
      value []}; term i draws from `jax.random.fold_in(rng, i)`.

    Raises:
      KeyError: for an unknown regularizer name (listing the known ones).
      ValueError: for duplicate term names or hparams that shadow the contract arguments.
      TypeError: for hparams the regularizer does not accept.
    """
    names = [t.name for t in terms]
    if len(set(names)) != len(names):
        raise ValueError(f"Duplicate regularizer terms: {names}.")
    fns = [registry.get(t.name) for t in terms]
    for term, fn in zip(terms, fns, strict=True):
        _check_hparams(term, fn)
    hparams = [dict(t.hparams) for t in terms]  # frozen copies: later edits of the caller's dict do not leak in

    def penalty(
        *,
        step: jax.Array | int,
        params: Any,
        apply_fn: Callable[..., Any],
        batch: Batch,
        outputs: AutoencoderOutput,
        rng: jax.Array,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        total = jnp.zeros((), jnp.float32)
        logs = {}
        for i, (term, fn, hp) in enumerate(zip(terms, fns, hparams, strict=True)):
            value = fn(
                params=params,
                apply_fn=apply_fn,
                batch=batch,
                outputs=outputs,
                rng=jax.random.fold_in(rng, i),
                **hp,
            )
            weight = term.weight(step) if callable(term.weight) else term.weight
            total = total + weight * value
            logs[f"reg/{term.name}"] = value
        return total, logs

    return penalty
