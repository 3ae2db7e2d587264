"""Argument types for the command line: numbers are checked where they are read, so a typo
(`--last -1`, `--C -1`) is a one-line usage error, never "all" or a traceback."""

from __future__ import annotations

import argparse
import math

__all__ = [
    "count",
    "journal_id",
    "non_negative_count",
    "non_negative_float",
    "port",
    "positive_float",
    "probability",
]


def _number(text: str, kind: type[int] | type[float]) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def count(text: str) -> int:
    """A whole number of at least 1."""
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_count(text: str) -> int:
    """A whole number of at least 0 (where 0 means "off")."""
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def journal_id(text: str) -> int:
    """A journal id as `status` prints it (``#12`` or ``12``)."""
    value = int(_number(text.lstrip("#"), int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"journal ids start at 1, not {value}")
    return value


def port(text: str) -> int:
    value = int(_number(text, int))
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 1 and 65535, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(_number(text, float))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {value:g}")
    return value


def non_negative_float(text: str) -> float:
    value = float(_number(text, float))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value:g}")
    return value


def probability(text: str) -> float:
    value = float(_number(text, float))
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value:g}")
    return value
