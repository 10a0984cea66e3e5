"""Checks of the Python API's plain arguments (seeds, counts, choices): a one-line
:class:`bsde.errors.ArgumentError` naming the argument, not a TypeError from deep inside torch."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from bsde.errors import ArgumentError

#: seeds are 0 <= seed < 2^62: torch's generators take 64 bits, and the solver derives a few seeds as seed + k
SEED_LIMIT = 2**62


def describe(value: Any) -> str:
    """'str 'abc'' (type and value, cut short) for a message."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def integer(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int: an integral number (not a bool) in [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentError(f"{name}: expected an integer, got {describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ArgumentError(f"{name}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ArgumentError(f"{name}: must be at most {maximum}, got {value}")
    return value


def optional_integer(name: str, value: Any, *, minimum: int | None = None) -> int | None:
    """None, or ``value`` as by :func:`integer`."""
    return None if value is None else integer(name, value, minimum=minimum)


def seed(value: Any, name: str = "seed") -> int:
    """A seed: an integer in [0, 2^62)."""
    return integer(name, value, minimum=0, maximum=SEED_LIMIT - 1)


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    """``value`` if it is one of ``options`` (strings)."""
    if not isinstance(value, str) or value not in options:
        raise ArgumentError(f"{name}: expected one of {', '.join(map(repr, options))}, got {describe(value)}")
    return value


def optional_callable(name: str, value: Any) -> Callable[..., Any] | None:
    """``value`` if it is None or callable; else an ArgumentError naming ``name``."""
    if value is not None and not callable(value):
        raise ArgumentError(f"{name}: expected a function (or None), got {describe(value)}")
    return value


def path(name: str, value: Any) -> Path:
    """``value`` (a str or os.PathLike) as a Path."""
    if not isinstance(value, (str, os.PathLike)):
        raise ArgumentError(f"{name}: expected a folder (a str or pathlib.Path), got {describe(value)}")
    return Path(value)


def optional_path(name: str, value: Any) -> Path | None:
    """None, or ``value`` as by :func:`path`."""
    return None if value is None else path(name, value)
