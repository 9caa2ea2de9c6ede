"""Soft Contextualized Encoder (see ``backend.py``)."""

from udtc.backends.sce.backend import SCEBackend, SoftContextualizedEncoder

__all__ = ["SCEBackend", "SoftContextualizedEncoder"]
