# -*- test-case-name: tests.test_cli -*-
"""
The argument types of the C{netstructer} command line, shared by its
commands (L{netstructer.cli}, L{netstructer.conformance}) from below them.
"""

from __future__ import annotations

import argparse

from netstructer.tap import parseSize

__all__ = ["positiveFloat", "positiveInt", "sizeArgument"]


def sizeArgument(text: str) -> int:
    """
    argparse type for C{--max-buffer-size}.

    @raise argparse.ArgumentTypeError: Not a size.
    """
    try:
        return parseSize(text, "--max-buffer-size")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def positiveFloat(text: str) -> float:
    """
    argparse type for a positive number of seconds.

    @raise argparse.ArgumentTypeError: Not one.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text!r}")
    return value


def positiveInt(text: str) -> int:
    """
    argparse type for a whole number of at least 1.

    @raise argparse.ArgumentTypeError: Not one.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
