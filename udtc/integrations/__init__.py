"""Big jobs on existing distributed engines: :mod:`udtc.integrations.ray` (Ray Data
``Dataset.map_batches``) and :mod:`udtc.integrations.spark` (a ``predict_batch_udf``). Each loads
the model once per worker and scores a batch of rows with one ``Classifier.classify`` call; the
label set is fixed per job. Both write the same columns (see :func:`prediction_columns`)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from typing import Any

from udtc.classifier import Classifier
from udtc.prediction import Prediction

#: The columns added to every row: ``label`` (str or None), ``labels`` (list of str), ``score``
#: (the label's score, or None), ``scores`` (JSON object label -> score, in label order). Rows
#: whose text is missing, not a string or blank get None / [] / None / "{}" (as ``udtc classify``).
COLUMNS = ("label", "labels", "score", "scores")


def require(module: str, extra: str) -> None:
    """A one-line ImportError naming the extra when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"udtc.integrations.{extra} needs the '{extra}' extra (missing {module}): "
                          f"pip install 'udtc[{extra}]'")


def prediction_columns(classifier: Classifier, texts: Sequence[Any], labels: Any, **options: Any) -> dict[str, list]:
    """Classify ``texts`` (one ``classify`` call for the valid ones) -> {column: values} in row order."""
    keep = [i for i, text in enumerate(texts) if isinstance(text, str) and text.strip()]
    predictions: dict[int, Prediction] = {}
    if keep:
        predictions = dict(zip(keep, classifier.classify([texts[i] for i in keep], labels, progress=False, **options)))
    columns: dict[str, list] = {name: [] for name in COLUMNS}
    for i in range(len(texts)):
        p = predictions.get(i)
        columns["label"].append(p.label if p else None)
        columns["labels"].append(list(p.labels) if p else [])
        columns["score"].append(p.scores[p.label] if p and p.label is not None else None)
        columns["scores"].append(json.dumps(p.scores, ensure_ascii=False) if p else "{}")
    return columns


def load(model: str | None, *, backend: str | None, device: str | None, threads: int | None) -> Classifier:
    """Load once per worker; ``threads`` caps torch's CPU threads (one per CPU the worker was given)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return Classifier.from_pretrained(model, backend=backend, device=device)
