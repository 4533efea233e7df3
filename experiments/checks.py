"""The rules every config check shares: a choice among names, a positive integer, keyword arguments of a callee.

Each raises ``ValueError`` naming the field (``config.<field>``) and what is valid. Used by
:func:`experiments.config_lib.validate` and by each task's ``validate``.
"""

from __future__ import annotations

import inspect

from jaxneg.registry import Entry


def choice(field, value, options):
    """``config.<field>`` must be one of ``options``."""
    if value not in options:
        raise ValueError(f"config.{field}={value!r} is not valid; valid values: {', '.join(map(repr, options))}")


def positive(field, value, low=1):
    """``config.<field>`` must be an integer ``>= low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"config.{field} must be an integer >= {low}, got {value!r}")


def keyword_arguments(field, target, kwargs, reserved, optional_only=False):
    """``config.<field>`` keys must be keyword arguments of ``target`` that the trainer does not set
    itself (``optional_only``: only those with a default; the others are the arrays it is called
    with). ``target``: a registry entry (its keywords, read once at registration) or a function."""
    keys = set(kwargs.keys())
    taken = sorted(keys & set(reserved))
    if taken:
        raise ValueError(f"config.{field}: {taken} are set by experiments.train from other fields; remove them")
    if isinstance(target, Entry):
        names = list(target.keywords) + ([] if optional_only else list(target.required))
    else:  # a model or view constructor (not a registry)
        params = inspect.signature(target).parameters
        names = [k for k, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                 and not (optional_only and p.default is p.empty)]
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
    valid = sorted(set(names) - set(reserved))
    bad = sorted(keys - set(valid))
    if bad:
        raise ValueError(f"config.{field}: unknown argument(s) {bad}; valid: {', '.join(valid)}")
