"""Accuracy, macro- and micro-F1 from per-label counts (numpy only).

Counts add up across batches and processes (a distributed run sums them with one all-reduce),
so the metrics of a sharded evaluation equal those of a single pass.

* accuracy: share of rows whose predicted label set equals the gold set (single-label: the label).
* micro-F1: 2 TP / (2 TP + FP + FN) summed over labels (single-label: equals accuracy).
* macro-F1: mean of per-label F1 over the labels that occur in the gold labels or the
  predictions, as scikit-learn's ``f1_score(average="macro")`` does for single-label data.
"""

from __future__ import annotations

import numpy as np


def counts(pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per-label counts ``(3, L)`` [TP, FP, FN] plus one column ``[exact matches, rows, 0]``: shape (3, L + 1).

    ``pred`` and ``gold`` are boolean indicator matrices ``(N, L)``.
    """
    pred, gold = np.asarray(pred, dtype=bool), np.asarray(gold, dtype=bool)
    assert pred.shape == gold.shape, f"pred {pred.shape} and gold {gold.shape} differ"
    tp = (pred & gold).sum(0)  # (L,)
    fp = (pred & ~gold).sum(0)
    fn = (~pred & gold).sum(0)
    exact = int((pred == gold).all(1).sum())
    return np.concatenate([np.stack([tp, fp, fn]), np.array([[exact], [len(pred)], [0]])], axis=1).astype(np.int64)


def from_counts(table: np.ndarray) -> dict[str, float]:
    """accuracy, macro_f1, micro_f1 (in [0, 1]) from :func:`counts` (or a sum of them)."""
    tp, fp, fn = (table[i, :-1].astype(np.float64) for i in range(3))
    exact, rows = table[0, -1], table[1, -1]
    present = (tp + fp + fn) > 0
    per_label = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=present)
    micro_den = 2 * tp.sum() + fp.sum() + fn.sum()
    return {
        "accuracy": float(exact / rows) if rows else 0.0,
        "macro_f1": float(per_label[present].mean()) if present.any() else 0.0,
        "micro_f1": float(2 * tp.sum() / micro_den) if micro_den else 0.0,
    }


def indicator(targets: list[tuple[str, ...]] | list[str], labels: list[str]) -> np.ndarray:
    """(N, L) boolean matrix from label names (one name or a tuple of names per row)."""
    index = {label: j for j, label in enumerate(labels)}
    out = np.zeros((len(targets), len(labels)), dtype=bool)
    for i, target in enumerate(targets):
        for name in (target,) if isinstance(target, str) else target:
            if name is not None and name in index:
                out[i, index[name]] = True
    return out


def classification_metrics(pred: list, gold: list, labels: list[str]) -> dict[str, float]:
    """Metrics of predicted vs gold label names (``str`` or ``None`` per row, or tuples for multi-label).

    Gold or predicted names outside ``labels`` are added as extra labels, so they count.
    """
    extra = [x for t in (*gold, *pred) for x in ((t,) if isinstance(t, str) else t or ()) if x not in labels]
    names = list(labels) + list(dict.fromkeys(extra))
    return from_counts(counts(indicator(pred, names), indicator(gold, names)))
