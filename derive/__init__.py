"""derive: backpropagation derived by SymPy, proved exactly, and emitted as numpy code."""

__version__ = "0.1.0"

__all__ = ["MLPClassifier", "MLPRegressor", "__version__"]


def __getattr__(name: str) -> object:
    """The estimators load on first use, so ``import derive`` needs no scikit-learn."""
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'derive' has no attribute {name!r}")
