"""NLI cross-encoder (see ``backend.py``)."""

from udtc.backends.nli.backend import NLIBackend, pair_layout

__all__ = ["NLIBackend", "pair_layout"]


def __getattr__(name: str):
    # the names the single-module ``udtc.backends.nli`` had (e.g. helpers, constants) stay reachable here
    import importlib

    for module in ["udtc.backends.nli.backend", "udtc.backends.nli.train"]:
        mod = importlib.import_module(module)
        if hasattr(mod, name):
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
