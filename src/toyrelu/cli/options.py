"""Config overrides on the command line: one option per RunConfig field, typed by the field.

``--n-features 10000`` sets a field; a comma list sweeps it (``--n-train 3,5,10``). Each value is
parsed by the field's annotated type (``typing.get_type_hints(RunConfig)``): integers (``1e3`` and
``10_000`` too), floats, ``inf`` where the type admits a float, ``none`` where it admits None,
true/false for booleans; the string fields list their ``CHOICES``. The help of each option is the
field's documentation (``field_docs``). Range checks stay with RunConfig, so a value is refused
with the message the config gives, whichever way it came in.
"""

from __future__ import annotations

import argparse
import functools
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from toyrelu.core.config import CHOICES, RunConfig, field_docs, field_names

ALIASES = {"seeds": "seed"}
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
INFINITY = ("inf", "infinity", "∞")


def value_parser(name: str) -> Callable[[str], Any]:
    """Parse one value of field ``name`` by its type; a bad value raises ``ValueError`` whose
    message names the field and what it expects."""
    kinds = _kinds(name)
    optional = type(None) in kinds

    def parse(text: str) -> Any:
        text = text.strip()
        if bool in kinds:
            if text.lower() in TRUE:
                return True
            if text.lower() in FALSE:
                return False
        elif optional and text.lower() == "none":
            return None
        elif float in kinds and text.lower() in INFINITY:
            return math.inf
        elif int in kinds:
            # Integers may come as 1e3 or 10_000; for int | float the one float allowed is inf.
            number = _float(text.replace("_", ""))
            if number is not None and number.is_integer():
                return int(number)
        elif float in kinds:
            number = _float(text)
            if number is not None:
                return number
        elif str in kinds:
            return text  # RunConfig checks it against the field's CHOICES
        raise ValueError(f"{name}: {text!r} is not a valid value (expected {_expected(kinds)})")

    return parse


class FieldValues:
    """An argparse ``type``: a comma list of one field's values, each parsed by
    ``value_parser``. Empty items are skipped; a list with none is an error unless
    ``allow_empty``.

    A bad value stops parsing with the one-line message of ``value_parser``, raised as an
    ``argparse.ArgumentError`` without an argument so that argparse adds no prefix to it."""

    def __init__(self, name: str, *, allow_empty: bool = False):
        self.name = name
        self.parse = value_parser(name)
        self.allow_empty = allow_empty

    def __call__(self, text: str) -> list[Any]:
        parts = [p for p in text.split(",") if p.strip()]
        if not parts and not self.allow_empty:
            raise argparse.ArgumentError(None, f"{self.name}: empty value")
        try:
            return [self.parse(p) for p in parts]
        except ValueError as exc:
            raise argparse.ArgumentError(None, str(exc)) from None


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """One option per RunConfig field (``--n-train``, and ``--seeds`` for ``--seed``), stored
    as ``set_<field>``: the list of values given, or None."""
    group = parser.add_argument_group(
        "config overrides (each replaces the preset's value; a comma list sweeps the field)"
    )
    docs = field_docs()
    for name in field_names():
        flags = [f"--{name.replace('_', '-')}"]
        flags += [f"--{alias}" for alias, target in ALIASES.items() if target == name]
        # argparse formats help with %, and the docstrings write reST literals.
        help = docs[name].replace("``", "").replace("%", "%%")
        group.add_argument(*flags, dest=f"set_{name}", type=FieldValues(name),
                           metavar=_metavar(name), help=help)


def overrides(args: argparse.Namespace) -> dict[str, list[Any]]:
    """The fields set on the command line: name -> values (one value, or a sweep axis)."""
    return {name: getattr(args, f"set_{name}") for name in field_names()
            if getattr(args, f"set_{name}", None) is not None}


@functools.cache
def _kinds(name: str) -> tuple[Any, ...]:
    """The types field ``name`` admits: ``(int, float)`` for ``int | float``, ``(int,)`` for
    ``int``, with ``NoneType`` for an optional field."""
    hint = typing.get_type_hints(RunConfig)[name]
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _expected(kinds: tuple[Any, ...]) -> str:
    if bool in kinds:
        return "true or false"
    if int in kinds and float in kinds:
        return "an integer or inf"
    return " or ".join("none" if k is type(None) else k.__name__ for k in kinds)


def _metavar(name: str) -> str:
    if name in CHOICES:
        return "|".join(CHOICES[name])
    kinds = _kinds(name)
    if bool in kinds:
        return "true|false"
    words = {int: "INT", float: "FLOAT", type(None): "none"}
    if int in kinds and float in kinds:
        return "INT|inf"
    return "|".join(words[k] for k in kinds)
