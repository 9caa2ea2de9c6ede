"""The backend contract: every scoring method in udtc implements this small interface.

A backend scores texts against one label set and returns raw logits shaped
``(n_texts, n_labels)`` in the caller's label order. The :class:`~udtc.Classifier` owns
everything else (input checks, grouping texts by label set, batching, softmax/sigmoid,
thresholds, result objects), so a backend stays a few hundred lines.

Normalisation rule: single-label probabilities are ``softmax(logits, -1)`` and multi-label
probabilities are ``sigmoid(logits)``; a backend that has its own multi-label rule (e.g. NLI's
softmax over [contradiction, entailment]) returns logits for which sigmoid gives that rule.

Label-set invariance is part of the contract: permuting ``labels`` must permute the returned
columns and change nothing else (|difference| <= 1e-5). ``tests/test_contract.py`` checks it
for every registered backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch


class Scores(NamedTuple):
    """What :meth:`Backend.score` returns."""

    logits: torch.Tensor  # (n_texts, n_labels) float32 on the CPU, caller's label order
    truncated: list[bool]  # per text: True when the text was cut to fit the model


class Backend(ABC):
    """Base class of every backend. Subclasses set ``name`` and implement the five methods."""

    name: ClassVar[str]
    #: template applied to each label (or its description) when the caller gives none
    default_template: ClassVar[str] = "{}"
    #: extra keyword arguments ``Classifier.classify`` may forward to :meth:`score`
    score_options: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    @abstractmethod
    def detect(cls, folder: Path) -> bool:
        """True when ``folder`` holds a checkpoint this backend can load (cheap: reads JSON only)."""

    @classmethod
    @abstractmethod
    def load(
        cls, folder: Path, *, device: torch.device, dtype: torch.dtype | None, **options: Any
    ) -> Backend:
        """Build the backend from a local folder. Unknown ``options`` raise ``TypeError``."""

    @abstractmethod
    def score(
        self, texts: list[str], labels: list[str], *, multi_label: bool, batch_size: int, **kwargs: Any
    ) -> Scores:
        """Score every text against the same label set.

        Args:
            texts: non-empty strings (already validated).
            labels: label strings as the model should read them (template applied), unique.
            multi_label: whether the logits will go through a sigmoid rather than a softmax.
            batch_size: upper bound on what one forward pass holds (texts, or text-label pairs).
            **kwargs: backend-specific options listed in ``score_options``.
        """

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write the weights (safetensors only), tokenizer and backend files into ``folder``."""

    @property
    @abstractmethod
    def options(self) -> dict[str, Any]:
        """JSON-serialisable options that :meth:`load` needs to rebuild this backend exactly."""
