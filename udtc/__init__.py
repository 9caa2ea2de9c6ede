"""udtc: user-defined text classification. Name the labels at call time; no retraining."""

from __future__ import annotations

from udtc._version import __version__
from udtc.backends import Backend, Scores, available_backends
from udtc.card import ModelCard
from udtc.classifier import Classifier
from udtc.compat import install_moved_modules
from udtc.defaults import DEFAULT_MODEL
from udtc.prediction import Prediction

install_moved_modules()

__all__ = [
    "DEFAULT_MODEL",
    "Backend",
    "Classifier",
    "ModelCard",
    "Prediction",
    "Scores",
    "TrainingArguments",
    "__version__",
    "available_backends",
    "finetune",
]


def __getattr__(name: str):
    # ``udtc.finetune`` and ``udtc.TrainingArguments`` are imported on first use, so ``import udtc``
    # loads no training code (nor peft).
    if name in ("finetune", "TrainingArguments"):
        import udtc.training

        return getattr(udtc.training, name)
    raise AttributeError(f"module 'udtc' has no attribute {name!r}")
