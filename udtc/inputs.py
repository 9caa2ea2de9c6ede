"""Checking what ``Classifier.classify`` is given: texts, label sets, thresholds (one clear error each).

Texts and labels may be any sequence or iterable of strings: a list, a tuple, a generator, a numpy
array of ``str``, a ``pandas.Series`` (or ``Series.unique()``). A pandas DataFrame is refused: iterating
one yields its column names, so the caller must pick a column (``df["text"]``).

Label names are kept exactly as given (they are the keys of ``Prediction.scores``, so the caller's own
list looks them up); the model reads them stripped of surrounding whitespace, and two names that are
equal once stripped are a duplicate. One comma-separated string is split on commas and stripped, as
transformers' zero-shot pipeline does (``"sports, politics"`` -> ``["sports", "politics"]``).

A label given by name alone is read with its underscores as spaces (``"play_music"`` -> ``"play music"``,
``"ALARM_SET"`` -> ``"ALARM SET"``): data sets name their classes as identifiers, and a sentence encoder reads
``play_music`` as the three tokens ``play``, ``_``, ``music``, which moves the label away from the texts
(``python -m benchmarks.label_forms``: with the six unseen sets' labels written in snake_case, cosine MiniLM's
mean macro-F1 is 41.1 read as written and 42.9 read as words, as with the words themselves; the default model,
less sensitive, 45.5 and 45.8). CamelCase is left as is: brand names
(``YouTube``, ``WhatsApp``) are CamelCase too, and split they mean something else. A description (a dict
``{name: description}``) is read exactly as given, so ``{"play_music": "play_music"}`` keeps the underscore.

Hierarchical labels (a dict whose values are lists or dicts, as gliclass takes them) are flattened: the
name of a leaf is its path joined with ``.`` (``{"topic": ["sports"]}`` -> ``"topic.sports"``, gliclass's
notation) and the model reads the leaf with its parents as context, ``"sports (topic)"`` (deeper:
``"basketball (topic > sports)"``; a leaf's own description replaces its name). That reading had the best
macro-F1 of five (``python -m benchmarks.hierarchy``: TREC-50 under its coarse classes, cosine MiniLM, 600
questions: 28.4 vs 27.5 for the leaf alone, 27.0 "parent leaf", 26.2 "parent: leaf").
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Mapping
from typing import Any

from udtc import safety
from udtc.logs import get_logger

logger = get_logger(__name__)

_WARNED_PAIRS: set[tuple[str, str]] = set()
LabelSet = tuple[tuple[str, ...], tuple[str, ...]]  # (names as given, what the model reads)


def as_list(values: Any, what: str) -> list[Any]:
    """Any sequence or iterable (list, tuple, generator, numpy array, pandas Series) as a list."""
    if hasattr(values, "columns") and hasattr(values, "iloc"):  # a pandas DataFrame
        columns = list(values.columns)
        first = columns[0] if columns else "text"
        raise TypeError(f"{what} is a DataFrame (iterating it gives its column names {columns}); pass one column, "
                        f"e.g. df[{first!r}]")
    if isinstance(values, (str, bytes, Mapping)):
        raise TypeError(f"{what} must be a sequence of strings, got {type(values).__name__}")
    if getattr(values, "ndim", 1) != 1:
        raise ValueError(f"{what} must be one-dimensional, got an array of shape {getattr(values, 'shape', '?')}")
    tolist = getattr(values, "tolist", None)  # numpy arrays and pandas Series: plain Python str items
    try:
        return list(tolist()) if callable(tolist) else list(values)
    except TypeError:
        raise TypeError(f"{what} must be a string or a sequence of strings, got {type(values).__name__}") from None


def check_texts(texts: Any) -> list[str]:
    text_list = as_list(texts, "texts")
    if not text_list:
        raise ValueError("texts is empty; pass at least one text")
    for i, text in enumerate(text_list):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise ValueError(f"text {i} is empty or whitespace only; remove it or give it content")
        safety.check_encodable(text, f"text {i}")
    return text_list


def label_words(name: str) -> str:
    """What the model reads for a label given by name alone: stripped, runs of ``_`` read as one space
    (``"play_music"`` -> ``"play music"``); a name that is only underscores is read as given."""
    return re.sub(r"_+", " ", name).strip() or name.strip()


def split_label_string(labels: str) -> list[str]:
    """``"sports, politics"`` -> ``["sports", "politics"]`` (transformers' pipeline does the same)."""
    return [name.strip() for name in labels.split(",") if name.strip()]


def one_label_set(spec: Any, where: str) -> LabelSet:
    """-> (names as given, what the model reads: stripped description or name)."""
    if isinstance(spec, str):
        spec = split_label_string(spec)
    if isinstance(spec, Mapping):
        pairs = _flatten(spec, where) if any(not isinstance(v, str) for v in spec.values()) else list(spec.items())
    else:
        try:
            pairs = [(name, label_words(name) if isinstance(name, str) else name) for name in as_list(spec, where)]
        except TypeError:
            raise TypeError(f"{where} must be a list of strings or a dict of name -> description, "
                            f"got {type(spec).__name__}") from None
    if not pairs:
        raise ValueError(f"{where} is empty; pass at least one label")
    seen: dict[str, str] = {}
    for name, description in pairs:
        if not isinstance(name, str) or not isinstance(description, str):
            bad = name if not isinstance(name, str) else description
            raise TypeError(f"{where}: every label and description must be a string, got {type(bad).__name__} {bad!r}")
        safety.check_encodable(name, f"{where}: label")
        safety.check_encodable(description, f"{where}: description of label {name!r}")
        key = name.strip()
        if not key or not description.strip():
            raise ValueError(f"{where}: label {name!r} is empty or whitespace only (or has an empty description)")
        if key in seen:
            raise ValueError(f"{where}: duplicate label {key!r} (labels are compared after stripping whitespace)")
        seen[key] = description.strip()
    folded: dict[str, str] = {}
    for key in seen:
        if key.casefold() in folded and (folded[key.casefold()], key) not in _WARNED_PAIRS:
            _WARNED_PAIRS.add((folded[key.casefold()], key))  # once per pair: a loop of calls warns once
            logger.warning("%s: %r and %r differ only in case; the model reads them as near-synonyms and splits "
                           "the score between them (merge them, or describe them apart with a dict)",
                           where, folded[key.casefold()], key)
        folded.setdefault(key.casefold(), key)
    read: dict[str, str] = {}
    for key, description in seen.items():
        first = read.setdefault(description, key)
        if first != key and (first, key) not in _WARNED_PAIRS:
            _WARNED_PAIRS.add((first, key))
            logger.warning("%s: %r and %r are read by the model as the same text %r, so they always get the same score "
                           "(merge them, or describe them apart with a dict)", where, first, key, description)
    return tuple(name for name, _ in pairs), tuple(seen.values())


def _flatten(tree: Mapping | list[tuple[Any, Any]], where: str, path: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Hierarchical labels -> (``"parent.leaf"``, ``"leaf (parent)"``) pairs, depth first, in the given order."""
    pairs: list[tuple[str, str]] = []
    for key, value in tree.items() if isinstance(tree, Mapping) else tree:
        if not isinstance(key, str) or not key.strip():
            raise TypeError(f"{where}: every label and label group name must be a non-empty string, got {key!r}")
        if isinstance(value, (Mapping, list, tuple)):
            if isinstance(value, (list, tuple)) and any(not isinstance(child, str) for child in value):
                raise TypeError(f"{where}: the labels under {key!r} must be strings, got {list(value)!r}")
            inner = _flatten(value if isinstance(value, Mapping) else [(c, label_words(c)) for c in value], where,
                             (*path, key.strip()))
            if not inner:
                raise ValueError(f"{where}: the label group {key!r} is empty; give it at least one label")
            pairs += inner
        elif isinstance(value, str):
            context = f" ({' > '.join(map(label_words, path))})" if path and value.strip() else ""
            pairs.append((".".join((*path, key.strip())) if path else key, value.strip() + context))
        else:
            raise TypeError(f"{where}: the description of {key!r} must be a string (or, for hierarchical labels, "
                            f"a list or dict of labels), got {type(value).__name__}")
    return pairs


def label_sets(labels: Any, n_texts: int) -> list[LabelSet]:
    """One label set shared by every text, or one per text."""
    if labels is None:
        raise ValueError("no labels given and the model has none of its own; pass labels=[...]")
    if isinstance(labels, str) or isinstance(labels, Mapping):
        return [one_label_set(labels, "labels")] * n_texts
    items = as_list(labels, "labels")
    per_text = len(items) > 0 and all(not isinstance(item, (str, bytes)) and (isinstance(item, Mapping)
                                                                             or hasattr(item, "__iter__"))
                                      for item in items)
    if not per_text:
        return [one_label_set(items, "labels")] * n_texts
    if len(items) != n_texts:
        raise ValueError(f"got {len(items)} label sets for {n_texts} text(s); pass one label set per text, or one shared list")
    return [one_label_set(spec, f"label set {i}") for i, spec in enumerate(items)]


def thresholds(threshold: Any, sets: list[LabelSet], multi_label: bool) -> dict[str, float] | float | None:
    if threshold is None:
        return 0.5 if multi_label else None
    values = threshold.values() if isinstance(threshold, Mapping) else [threshold]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:  # numpy too
            raise ValueError(f"threshold must be a number in [0, 1] (or a dict of them), got {value!r}")
    if not isinstance(threshold, Mapping):
        return float(threshold)
    known = {name for names, _ in sets for name in names}
    unknown = sorted(set(threshold) - known)
    if unknown:
        raise ValueError(f"threshold names labels that are not in any label set: {unknown}")
    return {name: float(value) for name, value in threshold.items()}


def per_text_options(options: Mapping[str, Any], names: frozenset[str], n_texts: int) -> dict[str, list[Any]]:
    """The options among ``names`` given as one value per text (a list or tuple), checked against ``n_texts``."""
    per_text = {k: list(v) for k, v in options.items() if k in names and isinstance(v, (list, tuple))}
    for name, values in per_text.items():
        if len(values) != n_texts:
            raise ValueError(f"{name} has {len(values)} values for {n_texts} text(s); pass one per text, or one "
                             "value shared by every text")
    return per_text


def positive_int(value: Any, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:  # numpy integers too
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")


def check_flag(value: Any, name: str) -> bool:
    """``value`` as a bool: True/False (numpy's too); anything else (e.g. the string "false") is a ``TypeError``."""
    if isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def check_template(template: Any) -> None:
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ValueError(f"template must be a string with exactly one '{{}}' for the label, got {template!r}")
