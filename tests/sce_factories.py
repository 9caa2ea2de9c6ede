"""Tiny random SCE checkpoint for the registry-driven contract tests (``tests/factories.py``)."""

from __future__ import annotations

from pathlib import Path

import torch
from factories import tiny_cosine


def tiny_sce(folder: Path, seed: int = 0) -> Path:
    """An SCE over a tiny random cosine embedder (built next to ``folder``), both its layers, random scales.

    ``label_input="tokens+embedding"`` and a non-zero SCE scale make every part of the model count.
    """
    from udtc import Classifier
    from udtc.backends.sce.backend import SCEBackend

    embedder = tiny_cosine(folder.parent / f"{folder.name}-embedder", seed)
    torch.manual_seed(seed)
    backend = SCEBackend.build(str(embedder), None, [0, 1], device=torch.device("cpu"), label_input="tokens+embedding")
    with torch.no_grad():
        backend.model.sce_scale.fill_(5.0)
    return Classifier(backend, base_model=str(embedder)).save_pretrained(folder)
