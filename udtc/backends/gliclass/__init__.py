"""GLiClass uni-encoder (see ``backend.py`` and ``model.py``)."""

from udtc.backends.gliclass.backend import GLiClassBackend

__all__ = ["GLiClassBackend"]


def __getattr__(name: str):
    # the names the single-module ``udtc.backends.gliclass`` had (e.g. helpers, constants) stay reachable here
    import importlib

    for module in ["udtc.backends.gliclass.backend", "udtc.backends.gliclass.model", "udtc.backends.gliclass.train"]:
        mod = importlib.import_module(module)
        if hasattr(mod, name):
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
