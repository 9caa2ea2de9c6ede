"""NLI cross-encoder (see ``backend.py``)."""

from udtc.backends.nli.backend import NLIBackend, pair_layout

__all__ = ["NLIBackend", "pair_layout"]
