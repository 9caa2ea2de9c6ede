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
    from udtc.onnx_export import export
    from udtc.prediction import Prediction
    from udtc.training import TrainingArguments, finetune

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
    "defaults",
    "export",
    "finetune",
]


def __getattr__(name: str):
    # plain function-level imports (not importlib), so tests/test_architecture.py sees the edges
    if name in ("Backend", "Scores", "available_backends"):
        import udtc.backends
        value = getattr(udtc.backends, name)
    elif name == "ModelCard":
        import udtc.card
        value = udtc.card.ModelCard
    elif name == "Classifier":
        import udtc.classifier
        value = udtc.classifier.Classifier
    elif name == "DEFAULT_MODEL":
        import udtc.defaults
        value = udtc.defaults.DEFAULT_MODEL
    elif name == "defaults":  # the shipped models' names (udtc.defaults.TUNED_MINILM, ...), importing nothing heavy
        import udtc.defaults
        value = udtc.defaults
    elif name == "export":
        import udtc.onnx_export
        value = udtc.onnx_export.export
    elif name == "Prediction":
        import udtc.prediction
        value = udtc.prediction.Prediction
    elif name in ("finetune", "TrainingArguments"):
        import udtc.training
        value = getattr(udtc.training, name)
    else:
        raise AttributeError(f"module 'udtc' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
