"""A network's proved module in memory, cached per specification.

The estimators and ``derive train`` share this, so a grid search derives and
proves each specification once.  It is the public API's ``module()``
(``derive.api``), with a cache in front.
"""

from __future__ import annotations

import functools
from types import ModuleType


class NotProved(Exception):
    """A network whose derivation failed verification: it is not trained."""


@functools.lru_cache(maxsize=64)
def network_module(layers: str, activation: str, loss: str, l2: bool = False) -> ModuleType:
    """The proved module for ``--layers``, ``--activation``, ``--loss`` and ``--l2`` (cached).

    Raises ``spec.SpecError`` for a bad specification and ``NotProved`` if a
    proof fails.
    """
    from .api import ProofFailed, derive

    try:
        return derive(layers, activation, loss, l2=l2).module()
    except ProofFailed as err:
        raise NotProved(str(err)) from None
