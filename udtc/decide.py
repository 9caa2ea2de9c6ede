"""The decide step: a label-set group's logits -> probabilities -> thresholds -> :class:`Prediction`.

Single-label: calibration ``(z + b) / T`` (udtc/calibration.py), then an optional prior correction
(udtc/priors.py: ``(logits, labels) -> logits``), then a softmax. Multi-label: a sigmoid per label,
then thresholds (the caller's, else the calibrated ones, else 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from udtc.calibration import Calibration
from udtc.prediction import Prediction
from udtc.priors import PriorCorrection, apply_prior


def decide(logits: torch.Tensor, names: Sequence[str], multi_label: bool, calibration: Calibration | None,
           prior: PriorCorrection | None) -> torch.Tensor:
    """The decide step of one label-set group: logits (n, L) -> probabilities (n, L).

    Single-label: calibration ``(z + b) / T``, then the prior correction, then a softmax.
    Multi-label: a sigmoid per label (calibrated thresholds are applied to these scores)."""
    if multi_label:
        return torch.sigmoid(logits)  # (n, L)
    if calibration is not None:
        logits = calibration.adjust(logits, names)
    if prior is not None:
        logits = apply_prior(prior, logits, names)
    return torch.softmax(logits, dim=-1)  # (n, L)


def prediction(text: str, names: tuple[str, ...], probs: torch.Tensor, multi_label: bool, thresholds,
                top_k: int | None, truncated: bool) -> Prediction:
    scores = {name: float(p) for name, p in zip(names, probs.tolist())}
    ranked = sorted(names, key=lambda n: -scores[n])

    def limit(name: str) -> float | None:
        if isinstance(thresholds, dict):
            return thresholds.get(name, 0.5 if multi_label else None)
        return thresholds

    if multi_label:
        chosen = [n for n in ranked if scores[n] >= (limit(n) or 0.0)][: top_k or None]  # never None here
        label = chosen[0] if chosen else None
    else:
        best = ranked[0]
        least = limit(best)
        keep = least is None or scores[best] >= least
        label = best if keep else None
        chosen = ranked[: top_k or 1] if keep else []
    return Prediction(text=text, label=label, labels=chosen, scores=scores, multi_label=multi_label, truncated=truncated)
