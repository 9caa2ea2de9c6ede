"""udtc: user-defined text classification. Name the labels at call time; no retraining.

Every public name is imported on first use (PEP 562), so ``import udtc`` and the ``udtc`` command's
``--version`` / ``--help`` load neither torch nor transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from udtc._version import __version__
from udtc.compat import install_moved_modules

if TYPE_CHECKING:
    from udtc.backends import Backend, Scores, available_backends
    from udtc.card import ModelCard
    from udtc.classifier import Classifier
    from udtc.defaults import DEFAULT_MODEL
    from udtc.prediction import Prediction
    from udtc.training import TrainingArguments, finetune

install_moved_modules()

#: public name -> the module that defines it
_LAZY = {
    "Backend": "udtc.backends",
    "Scores": "udtc.backends",
    "available_backends": "udtc.backends",
    "ModelCard": "udtc.card",
    "Classifier": "udtc.classifier",
    "DEFAULT_MODEL": "udtc.defaults",
    "Prediction": "udtc.prediction",
    "TrainingArguments": "udtc.training",
    "finetune": "udtc.training",
}

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
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'udtc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
