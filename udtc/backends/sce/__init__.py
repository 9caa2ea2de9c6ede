"""Soft Contextualized Encoder (see ``backend.py``)."""

from udtc.backends.sce.backend import SCEBackend, SoftContextualizedEncoder

__all__ = ["SCEBackend", "SoftContextualizedEncoder"]


def __getattr__(name: str):
    # the names the single-module ``udtc.backends.sce`` had (e.g. helpers, constants) stay reachable here
    import importlib

    for module in ["udtc.backends.sce.backend", "udtc.backends.sce.train"]:
        mod = importlib.import_module(module)
        if hasattr(mod, name):
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
