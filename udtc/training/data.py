"""Training data: read (file, list of dicts, DataFrame, ``datasets.Dataset``), validate, sample shots.

Neither pandas nor datasets is required: both are recognised by their methods (duck typing).
Rows with an empty text or label are skipped and counted; every other problem is an error that
names what was found. With ``hypothesis_column`` the rows are premise/hypothesis pairs: each
"text" is a ``(premise, hypothesis)`` tuple and the label a pair class (the backend's ``pair_targets``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from udtc.io import read_rows
from udtc.logs import get_logger

logger = get_logger(__name__)


@dataclass
class Examples:
    """Validated rows: one text and a tuple of labels each (exactly one unless ``multi_label``).

    A text is a ``(premise, hypothesis)`` tuple when the rows were read with ``hypothesis_column``."""

    texts: list[Any]  # strings, or (premise, hypothesis) tuples
    targets: list[tuple[str, ...]]
    multi_label: bool
    skipped: int = 0  # rows left out because their text or label was empty
    labels: list[str] = field(default_factory=list)  # distinct labels, in order of first appearance

    def __post_init__(self) -> None:
        if not self.labels:
            self.labels = list(dict.fromkeys(x for target in self.targets for x in target))

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def pairs(self) -> bool:
        """True for premise/hypothesis pairs."""
        return bool(self.texts) and isinstance(self.texts[0], tuple)

    def counts(self) -> dict[str, int]:
        counter = Counter(x for target in self.targets for x in target)
        return {label: counter[label] for label in self.labels}

    def fingerprint(self) -> str:
        payload = json.dumps([self.texts, self.targets, self.multi_label], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def subset(self, indices: Sequence[int], labels: list[str] | None = None) -> Examples:
        return Examples([self.texts[i] for i in indices], [self.targets[i] for i in indices], self.multi_label,
                        self.skipped, labels or [])


def load_examples(data: Any, *, text_column: str = "text", label_column: str = "label",
                  label_separator: str | None = None, what: str = "train",
                  hypothesis_column: str | None = None) -> Examples:
    """Rows of ``data`` as :class:`Examples`; ``what`` names the argument in messages.

    ``hypothesis_column``: read premise (``text_column``) / hypothesis pairs with one label each."""
    rows, columns, class_names = _rows(data, text_column, what)
    if not rows:
        raise ValueError(f"{what} data has no rows")
    needed = [(text_column, "text_column"), (label_column, "label_column")]
    if hypothesis_column is not None:
        if not isinstance(hypothesis_column, str) or hypothesis_column in (text_column, label_column):
            raise ValueError(f"hypothesis_column must name a column other than text_column={text_column!r} (the "
                             f"premise) and label_column={label_column!r}, got {hypothesis_column!r}")
        if label_separator is not None:
            raise ValueError("label_separator does not apply to premise/hypothesis pairs: each pair has one NLI label")
        needed.append((hypothesis_column, "hypothesis_column"))
    for column, arg in needed:
        if column not in columns:
            raise ValueError(f"{what} data has no column {column!r} ({arg}={column!r}); "
                             f"columns found: {', '.join(map(str, columns)) or 'none'}")
    if label_separator is not None and (not isinstance(label_separator, str) or not label_separator):
        raise ValueError(f"label_separator must be a non-empty string or None, got {label_separator!r}")
    multi_label = hypothesis_column is None and (
        label_separator is not None or any(isinstance(r.get(label_column), (list, tuple)) for r in rows))
    texts, targets, skipped = [], [], 0
    for i, row in enumerate(rows):
        text = row.get(text_column)
        hypothesis = row.get(hypothesis_column) if hypothesis_column is not None else ""
        target = _labels_of(row.get(label_column), label_separator, class_names.get(label_column), f"{what} row {i}")
        if _is_empty(text) or (hypothesis_column is not None and _is_empty(hypothesis)) or not target:
            skipped += 1
            continue
        for value, column in ((text, text_column), (hypothesis, str(hypothesis_column))):
            if not isinstance(value, str):
                raise TypeError(f"{what} row {i}: the text ({column!r}) is a {type(value).__name__}, not a string")
        if hypothesis_column is not None and len(target) > 1:
            raise ValueError(f"{what} row {i} has several labels {list(target)}; a premise/hypothesis pair has one "
                             "NLI label")
        if not multi_label and len(target) > 1:
            raise ValueError(f"{what} row {i} has several labels {list(target)}; pass label_separator=... for multi-label")
        texts.append((text, hypothesis) if hypothesis_column is not None else text)
        targets.append(target)
    if skipped:
        empty = "premise, hypothesis" if hypothesis_column is not None else "text"
        logger.warning(f"{what} data: skipped {skipped} row(s) with an empty {empty} or label")
    if not texts:
        raise ValueError(f"{what} data has no row with both a text and a label ({len(rows)} row(s) read, all empty)")
    return Examples(texts, targets, multi_label, skipped)


def check_train(train: Examples, label_synonyms: dict[str, list[str]] | None = None) -> None:
    if not train.multi_label and len(train.labels) < 2:
        raise ValueError(f"single-label training needs at least two labels, the train data has {train.labels}")
    unknown = sorted(set(label_synonyms or {}) - set(train.labels))
    if unknown:
        logger.warning(f"label_synonyms names labels the train data lacks: {unknown}; they are not used (check the "
                       f"names against the train labels {train.labels})")


def sample_shots(data: Examples, shots: int, seed: int) -> Examples:
    """``shots`` rows per label, drawn with ``seed`` (rows keep their order); warns for labels with fewer."""
    rng = random.Random(f"shots:{seed}")
    keys = [rng.random() for _ in range(len(data))]
    chosen: set[int] = set()
    short = {}
    for label in data.labels:
        rows = sorted((i for i, target in enumerate(data.targets) if label in target), key=lambda i: (keys[i], i))
        if len(rows) < shots:
            short[label] = len(rows)
        chosen.update(rows[:shots])
    if short:
        listed = ", ".join(f"{label!r} ({n})" for label, n in short.items())
        logger.warning(f"shots={shots}: these labels have fewer examples, all of them are used: {listed}")
    return data.subset(sorted(chosen), labels=data.labels)


def check_eval(eval_data: Examples, train: Examples) -> Examples:
    """Warn about eval labels the train data lacks; those labels are left out of evaluation."""
    if eval_data.multi_label != train.multi_label:
        raise ValueError(f"train is {'multi' if train.multi_label else 'single'}-label but eval is "
                         f"{'multi' if eval_data.multi_label else 'single'}-label; read both with the same label_separator")
    known = set(train.labels)
    unknown = [x for x in eval_data.labels if x not in known]
    keep = [i for i, target in enumerate(eval_data.targets) if any(x in known for x in target)]
    if unknown:
        logger.warning(f"eval data has labels the train data lacks: {unknown}; the model cannot predict them, so "
                       f"{len(eval_data) - len(keep)} eval row(s) are left out and those labels dropped from the rest")
    if not keep:
        raise ValueError(f"no eval row has a label the train data has (train labels: {train.labels})")
    targets = [tuple(x for x in eval_data.targets[i] if x in known) for i in keep]
    return Examples([eval_data.texts[i] for i in keep], targets, eval_data.multi_label, eval_data.skipped,
                    list(train.labels))


def label_examples(data: Examples, width: int = 100) -> dict[str, str]:
    """The first training text of each label, shortened for a model card table."""
    out: dict[str, str] = {}
    for text, target in zip(data.texts, data.targets):
        if isinstance(text, tuple):
            text = " -> ".join(text)  # premise -> hypothesis
        for label in target:
            if label not in out:
                flat = " ".join(text.split()).replace("|", "\\|")
                out[label] = flat if len(flat) <= width else flat[: width - 3] + "..."
    return out


# ---------------------------------------------------------------------------------------------- reading
def _rows(data: Any, text_column: str, what: str) -> tuple[list[Any], list[str], dict[str, list[str]]]:
    """-> (rows as mappings, columns found, label-id -> name tables of ``datasets`` ClassLabel columns)."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        if path.is_dir():
            raise ValueError(f"{what}={os.fspath(data)!r} is a folder; pass a .csv, .tsv or .jsonl file")
        rows = read_rows(path, text_column)
        return rows, list(dict.fromkeys(k for row in rows for k in row)), {}
    if hasattr(data, "column_names") and hasattr(data, "features"):  # datasets.Dataset
        if isinstance(data.column_names, Mapping):
            raise TypeError(f"{what} is a DatasetDict with splits {list(data.column_names)}; pass one split, e.g. ds['train']")
        names = {col: list(feature.names) for col, feature in dict(data.features).items() if hasattr(feature, "names")}
        rows = data.to_list() if hasattr(data, "to_list") else [dict(r) for r in data]
        return rows, list(data.column_names), names
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas.DataFrame
        return data.to_dict("records"), [str(c) for c in data.columns], {}
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        bad = next((i for i, row in enumerate(data) if not isinstance(row, Mapping)), None)
        if bad is not None:
            raise TypeError(f"{what}[{bad}] is a {type(data[bad]).__name__}; a list must hold dicts like "
                            "{'text': ..., 'label': ...}")
        return list(data), list(dict.fromkeys(k for row in data for k in row)), {}
    raise TypeError(f"{what} must be a .csv/.tsv/.jsonl path, a list of dicts, a pandas DataFrame or a "
                    f"datasets.Dataset, got {type(data).__name__}")


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _labels_of(value: Any, separator: str | None, class_names: list[str] | None, where: str) -> tuple[str, ...]:
    if _is_empty(value):
        return ()
    if isinstance(value, (list, tuple)):
        parts = list(value)
    elif isinstance(value, str):
        parts = value.split(separator) if separator else [value]
    else:
        parts = [value]
    out = []
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool) and class_names:
            if not 0 <= part < len(class_names):
                raise ValueError(f"{where}: label id {part} is outside the ClassLabel names {class_names}")
            part = class_names[part]
        if not isinstance(part, str):
            raise TypeError(f"{where}: the label is a {type(part).__name__} ({part!r}); labels must be names "
                            "(strings), since the model reads them; map ids to names first")
        if part.strip():
            out.append(part.strip())
    return tuple(dict.fromkeys(out))
