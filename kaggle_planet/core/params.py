"""Numeric parameters that a table entry (a loss, a scheduler) declares for itself.

An entry owns its parameters: ``Param(default, lo, hi, help)``. The config key ``loss_args`` /
``scheduler_args`` is checked against the chosen entry's declarations by :func:`check_args`, and the
docs' key table lists them from the same declarations, so adding a loss with a new parameter touches one place.
No torch here: config validation imports this.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


class ArgError(ValueError):
    """One parameter's problem ("gamma: expected ..."); the config loader adds file and key path."""


@dataclass(frozen=True)
class Param:
    default: float
    help: str
    lo: float | None = None
    hi: float | None = None
    integer: bool = False

    @property
    def kind(self) -> str:
        what = "integer" if self.integer else "number"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"{what} in [{lo}, {hi}]"

    def check(self, name: str, value: Any) -> float | int:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok_type and self.integer and float(value) != int(value):
            ok_type = False
        if not ok_type or not math.isfinite(value) or (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise ArgError(f"{name}: expected a {self.kind}, got {value!r}")
        return int(value) if self.integer else float(value)


def check_args(args: dict[str, Any] | None, params: dict[str, Param], owner: str) -> dict[str, float | int]:
    """``args`` checked against ``params`` and completed with the defaults.

    Raises ArgError naming the parameter and what is valid (``owner`` names the entry, e.g. "loss focal").
    """
    args = dict(args or {})
    unknown = [k for k in args if k not in params]
    if unknown:
        valid = ", ".join(params) if params else "none"
        raise ArgError(f"{unknown[0]}: not a parameter of {owner}; valid: {valid}")
    return {name: p.check(name, args[name]) if name in args else p.default for name, p in params.items()}


def describe(params: dict[str, Param]) -> str:
    """``gamma=2 (focusing exponent), alpha=...`` for help texts and the docs' key table."""
    return "; ".join(f"{n}={p.default:g} ({p.help})" for n, p in params.items()) or "no parameters"
