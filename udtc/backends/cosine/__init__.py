"""Cosine similarity of sentence embeddings (see ``backend.py``)."""

from udtc.backends.cosine.backend import CosineBackend

__all__ = ["CosineBackend"]


def __getattr__(name: str):
    # the names the single-module ``udtc.backends.cosine`` had (e.g. helpers, constants) stay reachable here
    import importlib

    for module in ["udtc.backends.cosine.backend"]:
        mod = importlib.import_module(module)
        if hasattr(mod, name):
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
