"""derive: backpropagation derived by SymPy, proved exactly, and emitted as numpy code."""

__version__ = "0.1.0"
