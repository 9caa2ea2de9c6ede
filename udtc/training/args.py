"""``TrainingArguments``: every setting of a fine-tuning run, validated in one place.

``udtc.finetune(model, train, args=TrainingArguments(...), **overrides)``; the keyword arguments
``finetune`` always took (``epochs=``, ``learning_rate=``, ...) are overrides of these fields.
Values that depend only on themselves are checked when the dataclass is built (``__post_init__``);
those that depend on the backend, the device or the eval data, in :meth:`TrainingArguments.resolved`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

import torch

METHODS = ("lora", "qlora", "full", "head", "instruction", "sparse")
#: methods that train a LoRA adapter (saved as one, unless merged); "instruction" is LoRA with the token NLL of the
#: gold label's answer (arXiv 2512.12677, Approach 2, Eq. (4)), for prompt-scoring causal LMs
ADAPTER_METHODS = ("lora", "qlora", "instruction")
#: methods whose result is saved as a change to a base named by reference (unless merged)
BY_REFERENCE = (*ADAPTER_METHODS, "sparse")
OPTIMIZERS = ("adamw", "adamw_8bit")
SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}
LOSSES = ("auto", "ce", "bce", "focal", "nll")
OBJECTIVES = ("supervised", "ppo")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
LORA_DEFAULTS = {"lora_r": 8, "lora_alpha": 16.0, "lora_dropout": 0.1}
DEFAULT_EPOCHS = 10
DEFAULT_LEARNING_RATES = {"full": 5e-5, "lora": 1e-3, "qlora": 2e-4, "head": 1e-3, "instruction": 2e-4, "sparse": 1e-4}
#: settings a backend's ``training_recipes`` may also set (used where the caller neither passed the field to
#: ``finetune`` nor set it to another value in the ``TrainingArguments`` given)
RECIPE_SETTINGS = ("weight_decay", "max_grad_norm", "lr_scheduler", "warmup_ratio", "batch_size",
                   "gradient_accumulation_steps")
#: a recipe's batch comes as a whole: the caller who sets either keeps the default of the other
BATCH_SHAPE = ("batch_size", "gradient_accumulation_steps")
#: fields that describe the run's output rather than its training (not part of the resume settings)
_OUTPUT_FIELDS = ("output_dir", "overwrite", "merge", "push_to_hub", "hub_private", "hub_token", "shots", "progress")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class TrainingArguments:
    """Settings of ``udtc.finetune`` (see docs/finetune.md for each one's effect).

    Args:
        output_dir: where the checkpoints and the final model go.
        method: ``"lora"``, ``"qlora"`` (CUDA + bitsandbytes), ``"full"``, ``"head"``, ``"instruction"``
            (LoRA on prompt -> label-text answers, for ``llm-prompt``) or ``"sparse"`` (token-driven sparse
            fine-tuning: a small chosen subset of the weights, saved as a sparse change), as the backend
            allows; None picks the first the backend supports of lora, full, head, instruction.
        objective: ``"supervised"`` (the loss above) or ``"ppo"``: GLiClass's proximal policy optimisation for
            multi-label data (arXiv 2508.07662 Sec. 2.3.2; ``udtc/training/ppo.py``), any backend's logits.
        ppo_clip, ppo_iterations: PPO's clip range (0.2) and policy steps per batch (3), the paper's values.
        sparse_fraction: ``"sparse"``: the share of the model's parameters that train (0.01 = 1 %).
        sparse_tokens: ``"sparse"``: how many task tokens' embedding rows train (within that share).
        epochs: passes over the training data; None: the backend's benchmarked recipe for the method
            (``training_recipes``, e.g. cosine LoRA 10), else 10.
        learning_rate: AdamW step size; None: the backend's benchmarked recipe for the method (e.g. cosine
            LoRA 3e-3, GLiClass full 3e-4), else by method (full 5e-5, lora 1e-3, qlora 2e-4, head 1e-3).
        batch_size: texts per forward pass (per process in a distributed run).
        seed: seeds sampling, shuffling, initialisation and dropout.
        shots: keep this many examples per label, drawn with ``seed``.
        overwrite: replace a non-empty ``output_dir`` (else only a matching unfinished run resumes).
        merge: LoRA: save the merged full weights instead of the adapter (no base needed to load).
        push_to_hub: a Hub repo id (``"user/name"``) to upload the final folder to.
        hub_private: create the Hub repo private (the default).
        hub_token: Hub token; else ``HF_TOKEN`` or the saved login.
        gradient_accumulation_steps: micro-batches per optimizer step.
        max_grad_norm: gradient clipping norm (None: no clipping).
        warmup_ratio: share of the optimizer steps spent warming the learning rate up from 0.
        lr_scheduler: ``"linear"``, ``"cosine"`` or ``"constant"`` after the warmup.
        weight_decay: AdamW decoupled weight decay, on weight matrices only.
        patience: stop after this many epochs without a better eval macro-F1 (needs eval data).
        mixed_precision: ``"auto"`` (bf16 or fp16 on CUDA, none on CPU), ``"no"``, ``"fp16"``, ``"bf16"``.
        lora_r, lora_alpha, lora_dropout: LoRA rank, scale numerator and dropout; None: the backend's
            defaults (``lora_defaults``), else 8, 16 and 0.1.
        lora_target_modules: layers LoRA wraps; the backend's ``lora_targets``, else peft's default.
        optim: ``"adamw"``, or ``"adamw_8bit"`` (bitsandbytes 8-bit AdamW; CUDA only).
        gradient_checkpointing: recompute activations in the backward pass; None: on for qlora only.
        loss: ``"auto"`` (softmax cross-entropy single-label, sigmoid BCE multi-label; for ``instruction``
            the token NLL of the gold answer), ``"ce"``, ``"bce"``, ``"focal"`` (sigmoid focal loss) or
            ``"nll"`` (the gold label's answer log-likelihood alone: logits must be log-probabilities).
        focal_alpha, focal_gamma: the focal loss's weight of positive labels (None: none) and exponent.
        negatives: train each batch on its gold labels plus this many sampled others; None: every label.
        label_synonyms: training label -> other names it may be shown as, with probability ``synonym_rate``.
        synonym_rate: that probability, in [0, 1].
        progress: show a progress bar with the loss.
    """

    output_dir: str | os.PathLike = "udtc-finetuned"
    method: str | None = None
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int = 16
    seed: int = 0
    shots: int | None = None
    overwrite: bool = False
    merge: bool = False
    push_to_hub: str | None = None
    hub_private: bool = True
    hub_token: str | None = None
    gradient_accumulation_steps: int = 1
    max_grad_norm: float | None = 1.0
    warmup_ratio: float = 0.1
    lr_scheduler: str = "linear"
    weight_decay: float = 0.01
    patience: int | None = None
    mixed_precision: str = "auto"
    lora_r: int | None = None
    lora_alpha: float | None = None
    lora_dropout: float | None = None
    lora_target_modules: list[str] | str | None = None
    sparse_fraction: float = 0.01
    sparse_tokens: int = 64
    objective: str = "supervised"
    ppo_clip: float = 0.2
    ppo_iterations: int = 3
    optim: str = "adamw"
    gradient_checkpointing: bool | None = None
    loss: str = "auto"
    focal_alpha: float | None = 0.7
    focal_gamma: float = 2.0
    negatives: int | None = None
    label_synonyms: dict[str, list[str]] | None = None
    synonym_rate: float = 0.5
    progress: bool = True

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.optim not in OPTIMIZERS:
            raise ValueError(f"unknown optim {self.optim!r}; use one of {', '.join(OPTIMIZERS)}")
        for name in ("batch_size", "gradient_accumulation_steps"):
            if not _positive_int(getattr(self, name)):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.lora_r is not None and not _positive_int(self.lora_r):
            raise ValueError(f"lora_r must be a positive integer, got {self.lora_r!r}")
        for name in ("epochs", "patience", "shots"):
            if getattr(self, name) is not None and not _positive_int(getattr(self, name)):
                raise ValueError(f"{name} must be a positive integer or None, got {getattr(self, name)!r}")
        if self.learning_rate is not None and not (_number(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if not (_number(self.warmup_ratio) and 0 <= self.warmup_ratio < 1):
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if self.lr_scheduler not in SCHEDULERS:
            raise ValueError(f"unknown lr_scheduler {self.lr_scheduler!r}; use one of {', '.join(SCHEDULERS)}")
        if self.max_grad_norm is not None and not (_number(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ValueError(f"max_grad_norm must be positive or None, got {self.max_grad_norm!r}")
        if self.lora_dropout is not None and not (_number(self.lora_dropout) and 0 <= self.lora_dropout < 1):
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not (_number(self.sparse_fraction) and 0 < self.sparse_fraction <= 1):
            raise ValueError(f"sparse_fraction must be in (0, 1], got {self.sparse_fraction!r}")
        if isinstance(self.sparse_tokens, bool) or not isinstance(self.sparse_tokens, int) or self.sparse_tokens < 0:
            raise ValueError(f"sparse_tokens must be an integer >= 0, got {self.sparse_tokens!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be 'auto', 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")
        self._check_objective()

    def _check_objective(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; use one of {', '.join(OBJECTIVES)}")
        if not (_number(self.ppo_clip) and 0 < self.ppo_clip < 1):
            raise ValueError(f"ppo_clip must be in (0, 1), got {self.ppo_clip!r}")
        if not _positive_int(self.ppo_iterations):
            raise ValueError(f"ppo_iterations must be a positive integer, got {self.ppo_iterations!r}")
        if self.objective == "ppo" and (self.loss != "auto" or self.gradient_accumulation_steps != 1):
            raise ValueError("objective='ppo' replaces the loss and takes its own optimiser steps; leave loss='auto' "
                             "and gradient_accumulation_steps=1")
        if self.focal_alpha is not None and not (_number(self.focal_alpha) and 0 <= self.focal_alpha <= 1):
            raise ValueError(f"focal_alpha must be in [0, 1] or None, got {self.focal_alpha!r}")
        if not (_number(self.focal_gamma) and self.focal_gamma >= 0):
            raise ValueError(f"focal_gamma must be a number >= 0, got {self.focal_gamma!r}")
        if self.negatives is not None and not _positive_int(self.negatives):
            raise ValueError(f"negatives must be a positive integer or None (all labels), got {self.negatives!r}")
        synonyms = self.label_synonyms
        if synonyms is not None:
            if not isinstance(synonyms, dict) or not all(
                    isinstance(k, str) and isinstance(v, (list, tuple)) and all(isinstance(x, str) and x.strip() for x in v)
                    for k, v in synonyms.items()):
                raise ValueError("label_synonyms must map each label to a list of non-empty strings, e.g. "
                                 "{'sports': ['sport', 'athletics']}")
            self.label_synonyms = {k: list(dict.fromkeys(x.strip() for x in v)) for k, v in synonyms.items() if v} or None
        if not (_number(self.synonym_rate) and 0 <= self.synonym_rate <= 1):
            raise ValueError(f"synonym_rate must be in [0, 1], got {self.synonym_rate!r}")
        self.focal_alpha = None if self.focal_alpha is None else float(self.focal_alpha)
        self.focal_gamma, self.synonym_rate = float(self.focal_gamma), float(self.synonym_rate)

    # ------------------------------------------------------------------ context-dependent checks
    def check_context(self, device: str | torch.device | None, *, has_eval: bool) -> None:
        """Hardware and data the settings need (checked before any model is resolved, so it fails at once)."""
        if self.patience is not None and not has_eval:
            raise ValueError("patience (early stopping) needs eval data to watch; pass eval=...")
        if self.method == "qlora":
            _check_qlora(device)
        if self.optim == "adamw_8bit":
            _check_qlora(device, what="optim='adamw_8bit'")
        _mixed_precision(self.mixed_precision, device)

    def resolved(self, methods: frozenset[str], lora_defaults: dict[str, float], *, backend: str,
                 device: str | torch.device | None, has_eval: bool,
                 recipes: dict[str, dict[str, Any]] | None = None,
                 explicit: frozenset[str] = frozenset()) -> TrainingArguments:
        """A copy with every default filled in for this backend and device (what the training loop reads)."""
        method = self.method or next((m for m in ("lora", "full", "head", "instruction") if m in methods), "lora")
        replace(self, method=method).check_context(device, has_eval=has_eval)
        if method not in methods:
            allowed = ", ".join(sorted(methods)) or "none: it cannot be fine-tuned yet"
            raise ValueError(f"method={method!r} is not supported by the {backend!r} backend; it supports: {allowed}")
        _check_peft(method)
        if self.merge and method not in BY_REFERENCE:
            raise ValueError(f"merge=True merges a LoRA adapter or sparse change into its base; method={method!r} saves "
                             "the full weights already: drop merge")
        recipe = (recipes or {}).get(method, {})
        lora = {key: getattr(self, key) if getattr(self, key) is not None else type(LORA_DEFAULTS[key])(default)
                for key, default in {**LORA_DEFAULTS, **lora_defaults}.items()}
        defaults = {f.name: f.default for f in fields(TrainingArguments)}
        chosen = {k for k in RECIPE_SETTINGS if k in explicit or getattr(self, k) != defaults[k]}  # the caller's own
        if chosen & set(BATCH_SHAPE):  # a batch the caller chose is not multiplied by the recipe's accumulation
            chosen |= set(BATCH_SHAPE)
        settings: dict[str, Any] = {k: recipe[k] for k in RECIPE_SETTINGS if k in recipe and k not in chosen}
        return replace(
            self, **settings, method=method, epochs=int(recipe.get("epochs", DEFAULT_EPOCHS)) if self.epochs is None else self.epochs,
            learning_rate=float(recipe.get("learning_rate", DEFAULT_LEARNING_RATES[method]) if self.learning_rate is None
                                else self.learning_rate),
            mixed_precision=_mixed_precision(self.mixed_precision, device),
            gradient_checkpointing=method == "qlora" if self.gradient_checkpointing is None
            else bool(self.gradient_checkpointing),
            lora_r=int(lora["lora_r"]), lora_alpha=float(lora["lora_alpha"]), lora_dropout=float(lora["lora_dropout"]))

    def training_settings(self) -> dict[str, Any]:
        """The fields that decide what a run computes (recorded in ``checkpoints/run.json`` for resuming)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _OUTPUT_FIELDS}


def _check_peft(method: str) -> None:
    """LoRA needs peft, an optional dependency: say so before anything is loaded or written."""
    if method in ADAPTER_METHODS:
        try:
            import peft  # noqa: F401
        except ImportError:
            raise ImportError(f"method={method!r} needs peft, which is not installed: pip install 'udtc[train]' "
                              "(or pick another method, e.g. method='full')") from None


def _check_qlora(device: str | torch.device | None, what: str = "method='qlora'") -> None:
    if not torch.cuda.is_available() or (device is not None and torch.device(device).type != "cuda"):
        raise ValueError(f"{what} needs a CUDA GPU (bitsandbytes) and none is available "
                         "here; use method='lora' (optim='adamw') on this machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ImportError(f"{what} needs bitsandbytes: pip install 'udtc[qlora]'") from None


def _mixed_precision(value: str, device: str | torch.device | None) -> str:
    on_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if value == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_cuda else "no"
    if value != "no" and not on_cuda:
        raise ValueError(f"mixed_precision={value!r} runs on CUDA only; use 'no' (or 'auto') on this device")
    return value
