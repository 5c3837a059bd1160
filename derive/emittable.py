"""Which networks the code generators can emit today: refuse the rest, never emit wrong code.

The derivation, the proof and the LaTeX handle every layer kind (``layers.AnyLayer``);
the numpy and array-API targets emit every kind (``backends/layered.py``; a residual
projection as the pair ([W_l | P_l], b_l)).  One function, asked by the CLI and the Python API
before they render a module.
"""

from __future__ import annotations

from .layers import Dense
from .model import Network, kind_name


def refusal(network: Network, target: str) -> str | None:
    """A one-line reason why ``target`` cannot emit ``network``, or None when it can."""
    if target in ("numpy", "array-api"):  # every kind, with --l2 too (backends/layered.py)
        return None
    kinds = list(dict.fromkeys(kind_name(x) for x in network.layers if not isinstance(x, Dense)))
    if not kinds:
        return None
    return (
        f"{', '.join(kinds)} layers are not emitted by the {target} target yet "
        "(--latex prints their derivation; from Python, derive.derive(...).pdf())"
    )
