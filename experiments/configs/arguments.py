"""The text form of a config's own argument: ``get_config(arg)``'s ``"key=value,key=value"`` (the quickstart's
``batches=16-32-64,seeds=2``, a config file's ``field=value`` overrides), parsed into Python values with
errors that name the option. (``--config.<field>=<value>`` command-line overrides: :mod:`experiments.cli`.)"""

from __future__ import annotations

import ml_collections

from experiments.config_lib import set_field


def parse_value(text: str):
    """A command-line value: a Python literal (``0.1``, ``(16, 32)``, ``True``, ``{'a': 1}``), else the string."""
    import ast

    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def split_items(text: str) -> list[str]:
    """Split ``"a=1,b=(2, 3),c='x,y'"`` at the commas outside brackets and quotes."""
    items, depth, quote, cur = [], 0, None, []
    for ch in text or "":
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    items.append("".join(cur))
    return [i for i in (x.strip() for x in items) if i]


def apply_arg(config: ml_collections.ConfigDict, arg: str | None, where: str = "config argument") -> ml_collections.ConfigDict:
    """Apply ``get_config``'s ``"field=value,other.field=value"`` argument (values parsed as Python literals)."""
    for field, text in arg_options(arg, where).items():
        set_field(config, field, parse_value(text), where)
    return config


def arg_options(arg: str | None, where: str) -> dict:
    """``get_config``'s ``"key=value,key=value"`` argument as ``{key: text}``; a malformed item names itself."""
    out = {}
    for item in split_items(arg or ""):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{where}: argument item {item!r} must look like key=value")
        out[key.strip()] = value.strip()
    return out


def number_list(option: str, text: str, kind=float, where: str = "config") -> tuple:
    """``"0.05-0.1-0.5"`` -> ``(0.05, 0.1, 0.5)``: numbers separated by ``-`` (``1e-3`` keeps its sign)."""
    import re

    parts = re.split(r"(?<![eE])-", text)
    try:
        values = tuple(kind(p) for p in parts)
    except ValueError:
        raise ValueError(f"{where}: {option}={text!r} must be {kind.__name__} values separated by '-', "
                         f"e.g. {option}={'-'.join(str(kind(v)) for v in (1, 2, 4))}") from None
    if kind is float and not all(v == v and abs(v) != float("inf") for v in values):
        raise ValueError(f"{where}: {option}={text!r} must be finite numbers")
    return values


def number(option: str, text: str, kind=float, where: str = "config"):
    """One number of a ``get_config`` argument, with an error that names the option."""
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{where}: {option}={text!r} must be one {kind.__name__} value") from None
