"""The array API target: one module for numpy, PyTorch, JAX, CuPy and Dask.

The module is printed from the same ``Derivation`` the numpy target prints
from, so it implements the same proved identities, with the same comments,
written against the Python array API standard through ``array_api_compat``.
"""

from .module import TARGET, render, spec_command

__all__ = ["TARGET", "render", "spec_command"]
