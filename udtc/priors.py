"""Prior corrections of the decide step: ``(logits, labels) -> logits`` over the texts of one call.

A zero-shot model carries a prior over label names (some names simply score higher on every text).
``classify(..., prior="batch")`` estimates that prior from the texts of the call itself
(transductive) and removes it, separately for every group of texts that shares a label set:

* ``"batch"``: mean-centering. Each label's log-probability is centred over the batch,
  ``z'_{ij} = log p_{ij} - mean_i log p_{ij}``, which divides each label's probability by the
  geometric mean of its probabilities over the texts (the "contextual calibration" of
  "Calibrate Before Use: Improving Few-Shot Performance of Language Models", arXiv 2102.09690,
  Eq. (1) with W = diag(p_cf)^-1, with the batch in place of a content-free input).
* ``"sinkhorn"``: Sinkhorn balancing. Rows and columns of the probability matrix are scaled in
  turn until every label receives the same share of the batch: ``P <- P / P.sum(0) * n / L``,
  ``P <- P / P.sum(1)`` (the Sinkhorn-Knopp iterations of "Sinkhorn Distances: Lightspeed
  Computation of Optimal Transport", arXiv 1306.0895, Algorithm 1, with uniform label marginals).

Both assume the labels are roughly balanced in the batch; on skewed data (SMS spam: 12 % spam)
they push texts into the rare label and hurt (docs/benchmarks.md, "Calibration").

Another correction is any callable ``(logits (n, L), label names) -> logits (n, L)``; e.g. a
"reference" prior estimated once from generic texts subtracts a fixed per-label bias. Pass the
callable as ``prior=``, or add it to :data:`PRIORS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

PriorCorrection = Callable[[torch.Tensor, Sequence[str]], torch.Tensor]

SINKHORN_ITERATIONS = 50


def batch_prior(logits: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
    """Mean-centred log-probabilities per label over the batch: (n, L) -> (n, L)."""
    log_p = torch.log_softmax(logits, dim=-1)  # (n, L)
    return log_p - log_p.mean(dim=0, keepdim=True)  # Eq. (1) of arXiv 2102.09690, prior = geometric mean


def sinkhorn_prior(logits: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
    """Log of the Sinkhorn-balanced probabilities (every label gets n / L of the mass): (n, L) -> (n, L)."""
    n, n_labels = logits.shape
    p = torch.softmax(logits.double(), dim=-1)  # (n, L)
    for _ in range(SINKHORN_ITERATIONS):
        p = p / p.sum(dim=0, keepdim=True).clamp_min(1e-300) * (n / n_labels)  # columns: n / L each
        p = p / p.sum(dim=1, keepdim=True)  # rows: probabilities again
    return p.clamp_min(1e-300).log().to(logits.dtype)


PRIORS: dict[str, PriorCorrection] = {"batch": batch_prior, "sinkhorn": sinkhorn_prior}


def get_prior(prior: str | PriorCorrection | None, multi_label: bool) -> PriorCorrection | None:
    """The correction named by ``prior`` (None: no correction); a clear error for anything else."""
    if prior is None:
        return None
    if isinstance(prior, str):
        if prior not in PRIORS:
            raise ValueError(f"unknown prior {prior!r}; valid: {', '.join(sorted(PRIORS))}, None or a callable "
                             "(logits, labels) -> logits")
        correction = PRIORS[prior]
    elif callable(prior):
        correction = prior
    else:
        raise TypeError(f"prior must be a name ({', '.join(sorted(PRIORS))}), a callable or None, got {type(prior).__name__}")
    if multi_label:
        raise ValueError("prior= corrects single-label scores (one softmax over the label set); for multi-label, "
                         "fit per-label thresholds with Classifier.calibrate(dev, multi_label=True)")
    return correction


def apply_prior(correction: PriorCorrection, logits: torch.Tensor, labels: Sequence[str]) -> torch.Tensor:
    """Run ``correction`` on one label-set group, checking what it needs and what it returns."""
    if logits.shape[0] < 2:
        raise ValueError(f"prior correction estimates each label's prior from the texts of the call, so it needs at "
                         f"least 2 texts per label set (ideally hundreds), got {logits.shape[0]} for labels {list(labels)}")
    out = correction(logits, labels)
    if not isinstance(out, torch.Tensor) or out.shape != logits.shape:
        raise RuntimeError(f"prior correction returned {getattr(out, 'shape', type(out).__name__)}, expected a tensor "
                           f"of shape {tuple(logits.shape)}")
    return out
