"""The losses of the training loop: softmax cross-entropy, sigmoid BCE, sigmoid focal loss (Lin et al.,
2017, arXiv:1708.02002, as GLiClass trains with it, arXiv:2508.07662 Sec. 2.3), and the token NLL of the
gold answer (instruction tuning, arXiv 2512.12677 Eq. (4))."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from udtc.training.args import TrainingArguments


def resolve_loss(loss: str, multi_label: bool, method: str | None = None) -> str:
    """The loss ``"auto"`` stands for; refuses softmax cross-entropy on multi-label data."""
    if method == "instruction":
        if loss not in ("auto", "nll"):
            raise ValueError(f"method='instruction' trains on the token NLL of the gold answer (loss='nll'), got "
                             f"loss={loss!r}; use method='lora' for the other losses")
        return "nll"
    if loss == "ce" and multi_label:
        raise ValueError("loss='ce' (softmax over the labels) needs single-label data; use 'bce' or 'focal' for "
                         "multi-label")
    return ("bce" if multi_label else "ce") if loss == "auto" else loss


def loss(logits: torch.Tensor, targets: torch.Tensor, kind: str, args: TrainingArguments) -> torch.Tensor:
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets)  # per-label sigmoid
    if kind == "focal":
        return focal_loss(logits, targets, args.focal_alpha, args.focal_gamma)
    if kind == "nll":  # logits are answer log-likelihoods: -log p(gold answer | prompt), arXiv 2512.12677 Eq. (4)
        return -(logits * targets).sum(-1).mean()
    return F.cross_entropy(logits, targets.argmax(-1))  # softmax over the candidate labels


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float | None, gamma: float) -> torch.Tensor:
    """Mean sigmoid focal loss (Lin et al., 2017) over every (text, label) cell."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # (B, L)
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)  # probability of the true answer
    loss = bce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean()
