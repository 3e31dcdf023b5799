"""Click parameter types shared by the train scripts and compare.py (no torch here).

click's FloatRange lets NaN and infinity through (every comparison with NaN is false), and its
IntRange has no upper bound by default: a huge count is always a typo, and reaches numpy or a
folder name as an overflow. These types turn such values into one usage error.
"""

from __future__ import annotations

import math
from typing import Any

import click

from mtlvsift.names import MAX_COUNT, MAX_SEED


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that also rejects nan and +-inf."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number.", param, ctx)
        return number


def count(min: int = 1, max: int = MAX_COUNT) -> click.IntRange:
    """A whole number of things (epochs, examples, workers), from ``min`` to ``max``."""
    return click.IntRange(min, max)


SEED = click.IntRange(0, MAX_SEED)
