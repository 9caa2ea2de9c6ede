"""Token-driven sparse fine-tuning (``finetune(..., method="sparse")``).

Krishnan, Wang & Kong, "Classifier Language Models: Unifying Sparse Finetuning and Adaptive Tokenization
for Specialized Classification Tasks" (arXiv 2508.08635; only the abstract is in ``shared/papers/
classifier-lm-sparse-finetuning-abstract.txt``): identify a small sensitive subset of the model's
parameters from the task-specific tokens of the fine-tuning data, fine-tune only those, leave every other
pretrained weight unchanged, and add no parameters (unlike LoRA).

Taken from the abstract: the selection is driven by the task's tokens; only a small subset is trained;
nothing is added to the model. Chosen by udtc where the abstract is silent:

1. Task tokens: the ``sparse_tokens`` token ids of the training texts with the highest label association,
   ``max_y p(t | y) * log(p(t | y) / p(t))`` (the largest per-label term of the token's mutual information
   with the label; document frequencies, add-one smoothing). Their rows of the input embedding matrix are
   trainable; no other embedding row is.
2. Sensitive entries: first-order Taylor saliency over the training data with the base weights,
   ``s_i = |sum_batches g_i * w_i|`` (the loss change if ``w_i`` were removed; Molchanov et al., 2019,
   arXiv:1906.10771), of the same loss the run trains with; the top entries of all weight matrices
   (``ndim >= 2``, embeddings excluded) up to the budget, ``sparse_fraction`` of the trainable module's
   parameters (task-token rows included in the count).
3. Training: gradients of unselected entries are zeroed by a hook, and AdamW runs without weight decay on
   these tensors, so unselected weights stay bit-identical to the base.
4. Saved: only the change, ``sparse_delta.safetensors`` with ``<param>::indices`` (int64, flat) and
   ``<param>::values`` (float32 differences), next to ``udtc_config.json`` naming the base; loading adds the
   differences to the base (``merge=True`` saves full weights instead).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from udtc.adapters import SPARSE_DELTA
from udtc.backends.base import Trainable
_EMBEDDING_NAMES = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "tok_embeddings.weight")


@dataclass
class Selection:
    """Which entries of which parameters train, and their base values (to save the change)."""

    masks: dict[str, torch.Tensor]  # name -> bool mask, same shape as the parameter
    base: dict[str, torch.Tensor]  # name -> base values at the selected flat indices
    tokens: list[int]  # the task tokens whose embedding rows train

    def size(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))


def task_tokens(tokenizer: Any, texts: list[str], targets: list[tuple[str, ...]], k: int) -> list[int]:
    """The ``k`` token ids of ``texts`` most associated with a label (see the module docstring, step 1)."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    docs = [set(tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"]) - special for t in texts]
    labels = sorted({y for target in targets for y in target})
    n = len(docs)
    df = Counter(t for d in docs for t in d)
    per_label = {y: [d for d, target in zip(docs, targets) if y in target] for y in labels}
    score: dict[int, float] = {}
    for y, rows in per_label.items():
        counts = Counter(t for d in rows for t in d)
        for t, c in counts.items():
            p_ty, p_t = (c + 1) / (len(rows) + 2), (df[t] + 1) / (n + 2)
            score[t] = max(score.get(t, -math.inf), p_ty * math.log(p_ty / p_t))
    return [t for t, _ in sorted(score.items(), key=lambda item: (-item[1], item[0]))[:k]]


def select(backend: Trainable, module: torch.nn.Module, batches: list[tuple[list[Any], torch.Tensor]], labels: list[str],
           loss_fn, *, multi_label: bool, fraction: float, n_tokens: int,
           token_texts: tuple[list[str], list[tuple[str, ...]]]) -> Selection:
    """Choose the trainable entries (steps 1 and 2) from the base weights of ``module``."""
    params = {name: p for name, p in module.named_parameters()}
    budget = max(1, int(fraction * sum(p.numel() for p in params.values())))
    embedding = next((name for name in params if name.endswith(_EMBEDDING_NAMES)), None)
    masks: dict[str, torch.Tensor] = {}
    tokens: list[int] = []
    tokenizer = getattr(backend, "tokenizer", None)
    if embedding is not None and tokenizer is not None and n_tokens > 0:
        rows = params[embedding].shape[1]
        tokens = [t for t in task_tokens(tokenizer, *token_texts, min(n_tokens, budget // rows))
                  if t < params[embedding].shape[0]]
        if tokens:
            mask = torch.zeros(params[embedding].shape, dtype=torch.bool)
            mask[tokens] = True
            masks[embedding] = mask
            budget -= int(mask.sum())
    matrices = [name for name, p in params.items() if p.ndim >= 2 and name != embedding]
    saliency = _saliency(backend, module, {name: params[name] for name in matrices}, batches, labels, loss_fn,
                         multi_label)
    if budget > 0 and matrices:
        flat = torch.cat([saliency[name].flatten() for name in matrices])  # (total,)
        top = torch.topk(flat, min(budget, flat.numel())).indices
        chosen = torch.zeros(flat.numel(), dtype=torch.bool)
        chosen[top] = True
        start = 0
        for name in matrices:
            n = params[name].numel()
            part = chosen[start : start + n].view(params[name].shape)
            if part.any():
                masks[name] = part
            start += n
    base = {name: params[name].detach().flatten()[mask.flatten().to(params[name].device)].float().cpu().clone()
            for name, mask in masks.items()}
    return Selection(masks, base, tokens)


def _saliency(backend: Trainable, module: torch.nn.Module, params: dict[str, torch.nn.Parameter],
              batches: list[tuple[list[Any], torch.Tensor]], labels: list[str], loss_fn,
              multi_label: bool) -> dict[str, torch.Tensor]:
    """``|sum over batches of grad * weight|`` per entry (step 2), in eval mode, weights unchanged."""
    was_training = module.training
    flags = {name: p.requires_grad for name, p in module.named_parameters()}
    module.eval()
    for name, p in module.named_parameters():
        p.requires_grad_(name in params)
        p.grad = None
    try:
        for texts, targets in batches:
            logits = backend.training_logits(texts, labels, multi_label=multi_label)  # (B, L)
            loss_fn(logits.float(), targets.to(logits.device)).backward()
        return {name: (p.grad * p.detach()).abs().float().cpu() if p.grad is not None else torch.zeros(p.shape)
                for name, p in params.items()}
    finally:
        for name, p in module.named_parameters():
            p.grad = None
            p.requires_grad_(flags[name])
        module.train(was_training)


def choose(backend: Trainable, module: torch.nn.Module, data: Any, labels: list[str], targets: torch.Tensor, loss_fn,
           args: Any) -> Selection:
    """Steps 1-3 for a run: the selection from the base weights over ``data``'s batches, training restricted
    to it. ``labels`` are the label texts the model reads, ``targets`` the (N, L) gold indicator."""
    n = len(data)
    batches = [([data.texts[j] for j in range(i, min(i + args.batch_size, n))], targets[i : i + args.batch_size])
               for i in range(0, n, args.batch_size)]
    texts = [t if isinstance(t, str) else " ".join(t) for t in data.texts]
    selection = select(backend, module, batches, labels, loss_fn, multi_label=data.multi_label,
                       fraction=args.sparse_fraction, n_tokens=args.sparse_tokens, token_texts=(texts, list(data.targets)))
    restrict(module, selection)
    return selection


def restrict(module: torch.nn.Module, selection: Selection) -> list[Any]:
    """Train only the selected entries (step 3): every other parameter frozen, masked gradients."""
    handles = []
    for name, p in module.named_parameters():
        mask = selection.masks.get(name)
        p.requires_grad_(mask is not None)
        if mask is not None:
            m = mask.to(p.device)
            handles.append(p.register_hook(lambda g, m=m: g * m))
    return handles


def save_delta(module: torch.nn.Module, selection: Selection, folder: Path) -> None:
    """The change of the selected entries (step 4), safetensors only."""
    from safetensors.torch import save_file

    params = dict(module.named_parameters())
    tensors: dict[str, torch.Tensor] = {}
    for name, mask in selection.masks.items():
        flat = mask.flatten()
        idx = flat.nonzero().flatten()  # (k,)
        now = params[name].detach().flatten()[flat.to(params[name].device)].float().cpu()
        tensors[f"{name}::indices"] = idx.to(torch.int64).contiguous()
        tensors[f"{name}::values"] = (now - selection.base[name]).contiguous()
    save_file(tensors, folder / SPARSE_DELTA, metadata={"format": "udtc-sparse-delta", "tokens": str(selection.tokens)})
