"""GLiClass uni-encoder (see ``backend.py`` and ``model.py``)."""

from udtc.backends.gliclass.backend import GLiClassBackend

__all__ = ["GLiClassBackend"]
