"""The console report: plain-text formulas and sentences a reader can take in at a glance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy as sp
from sympy.printing.str import StrPrinter

from . import catalog
from .version import __version__

if TYPE_CHECKING:
    from .check import Check
    from .model import Network


class _Plain(StrPrinter):  # type: ignore[misc]  # SymPy has no types: its classes are Any
    """SymPy's str printer, with ``Piecewise`` as ``x if cond else y``."""

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        *branches, (last, cond) = expr.args
        text = (
            self._print(last)
            if cond == sp.true
            else f"{self._print(last)} if {self._print(cond)} else undefined"
        )
        for value, condition in reversed(branches):
            text = f"{self._print(value)} if {self._print(condition)} else {text}"
        return text

    def _print_Rational(self, expr: sp.Rational) -> str:
        text = catalog.decimal(expr)
        return text if "/" not in text and len(text) <= 12 else super()._print_Rational(expr)


def plain(expr: sp.Basic, **settings: object) -> str:
    """A formula as plain text: ``1 if A > 0 else 0``, ``1 - A**2``."""
    text: str = _Plain(settings).doprint(expr)
    return text


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``1 layer``, ``2 layers``."""
    return f"{n} {singular if n == 1 else (plural or singular + 's')}"


def title(network: Network) -> str:
    acts = list(dict.fromkeys(a.name for a in network.activations))
    return (
        f"derive {__version__}: {'-'.join(map(str, network.sizes))} network, "
        f"{', '.join(acts)} {'activation' if len(acts) == 1 else 'activations'}, "
        f"{network.loss.name} loss" + (" plus the L2 penalty λ/2 Σ‖W_l‖²" if network.l2 else "")
    )


def line(check: Check) -> str:
    status = "FAILED" if not check.ok else check.status.value
    why = f" -- {check.detail}" if not check.ok else ""
    return f"  {status:8} {check.name}: {check.statement}  [{check.method}; {check.seconds:.2f} s]{why}"
