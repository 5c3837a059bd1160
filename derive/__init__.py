"""derive: backpropagation derived by SymPy, proved exactly, and emitted as numpy code.

The public API (``derive.derive``, ``derive.seed_check``) lives in ``derive.api`` and is
imported on first use, so ``import derive`` stays light.
"""

from __future__ import annotations

from . import defaults
from .version import __version__

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing would slow `import derive`
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from .api import Derived

__all__ = ["MLPClassifier", "MLPRegressor", "__version__", "derive", "seed_check"]


def derive(
    layers: str | Sequence[int],
    activation: str | Sequence[str] = defaults.ACTIVATION,
    loss: str = defaults.LOSS,
    **options: Any,
) -> Derived:
    """Derive and prove backpropagation: ``derive.derive([20, 50, 10], activation="tanh")``.

    Returns a ``derive.api.Derived``; options: ``name``, ``end_to_end_depth``.
    """
    from .api import derive as derive_network

    return derive_network(layers, activation, loss, **options)


def seed_check() -> list[Any]:
    """The seed's own equations, each decided by the proof engine."""
    from .api import seed_check as check

    return check()


def __getattr__(name: str) -> object:
    """The estimators load on first use, so ``import derive`` needs no scikit-learn."""
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'derive' has no attribute {name!r}")
