"""Argument types shared by the command line (``fastmlp.__main__``) and the bench report.

A module of its own so that ``fastmlp.bench`` imports nothing from the command line.
"""

from __future__ import annotations

import argparse

__all__ = ["int_at_least"]


def int_at_least(minimum: int, maximum: int | None = None):
    """Return an argparse ``type`` accepting integers ``>= minimum`` (and ``<= maximum``)."""
    if maximum is not None:
        wanted = f"an integer from {minimum} to {maximum}"
    else:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    return parse
