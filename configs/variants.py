"""The one parser of config variants: `--config=configs/x.py:quick,sdae` calls `get_config("quick,sdae")`.

chosen = variants.parse(arg, VARIANTS)                        # ["quick", "sdae"], unknown names refused
method = variants.one_of(chosen, METHODS, default="closed_form")   # at most one of a group
"""

from collections.abc import Sequence


def parse(arg: str, known: Sequence[str]) -> list[str]:
    """The comma-separated variants of `arg`, in order.

    Raises:
      ValueError: for a variant not in `known`, listing the known ones.
    """
    chosen = [v.strip() for v in arg.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise ValueError(f"Unknown variant(s) {unknown}; known: {', '.join(known)}.")
    return chosen


def one_of(chosen: Sequence[str], group: Sequence[str], *, default: str | None = None) -> str | None:
    """The one variant of `group` in `chosen`, or `default` when there is none.

    Raises:
      ValueError: if `chosen` holds more than one variant of `group`.
    """
    picked = [v for v in chosen if v in group]
    if len(picked) > 1:
        raise ValueError(f"Choose one of {', '.join(group)}; got {', '.join(picked)}.")
    return picked[0] if picked else default
