"""Cosine similarity of sentence embeddings (see ``backend.py``)."""

from udtc.backends.cosine.backend import CosineBackend

__all__ = ["CosineBackend"]
