"""udtc: user-defined text classification. Name the labels at call time; no retraining."""

from __future__ import annotations

from udtc._version import __version__
from udtc.backends import Backend, Scores, available_backends
from udtc.card import ModelCard
from udtc.classifier import Classifier
from udtc.defaults import DEFAULT_MODEL
from udtc.prediction import Prediction

__all__ = ["Backend", "Classifier", "DEFAULT_MODEL", "ModelCard", "Prediction", "Scores", "__version__", "available_backends"]
