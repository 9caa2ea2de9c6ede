"""udtc: user-defined text classification. Name the labels at call time; no retraining."""

from __future__ import annotations

from udtc._version import __version__
from udtc.backends import Backend, Scores, available_backends
from udtc.card import ModelCard
from udtc.classifier import Classifier
from udtc.defaults import DEFAULT_MODEL
from udtc.prediction import Prediction

__all__ = [
    "DEFAULT_MODEL",
    "Backend",
    "Classifier",
    "ModelCard",
    "Prediction",
    "Scores",
    "__version__",
    "available_backends",
    "finetune",
]


def __getattr__(name: str):
    # ``udtc.finetune`` is imported on first use, so ``import udtc`` loads no training code (nor peft).
    if name == "finetune":
        from udtc.training import finetune

        return finetune
    raise AttributeError(f"module 'udtc' has no attribute {name!r}")
