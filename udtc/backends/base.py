"""The backend contract: every scoring method in udtc implements this small interface.

A backend scores texts against one label set and returns raw logits shaped
``(n_texts, n_labels)`` in the caller's label order. The :class:`~udtc.Classifier` owns
everything else (input checks, grouping texts by label set, batching, softmax/sigmoid,
thresholds, result objects), so a backend stays a few hundred lines.

Normalisation rule: single-label probabilities are ``softmax(logits, -1)`` and multi-label
probabilities are ``sigmoid(logits)``; a backend that has its own multi-label rule (e.g. NLI's
softmax over [contradiction, entailment]) returns logits for which sigmoid gives that rule.

Label-set invariance is part of the contract: permuting ``labels`` must permute the returned
columns and change nothing else (|difference| <= 1e-5). ``tests/test_contract.py`` checks it
for every registered backend.

Batching tolerance: ``batch_size`` and which texts share a batch may change a score by at most
:data:`BATCH_TOLERANCE` (1e-5 in probability; 2.6e-6 was the largest change measured). Padding a text
to a longer batch changes the order of float32 sums in attention and pooling, so scores are not
bit-identical across batch sizes; they are identical for the same inputs and ``batch_size``.
``tests/test_contract.py`` checks it for every registered backend.

Fine-tuning (optional): a backend that ``udtc.finetune`` can train lists the methods it allows in
``supported_methods`` and implements :meth:`Backend.trainable_module` and
:meth:`Backend.training_logits` (and :meth:`Backend.clear_cache` if it caches anything computed
from its weights). The training loop (``udtc/training/loop.py``) owns the rest: LoRA through peft,
the optimiser, checkpoints, evaluation, distributed runs. A backend without them is not trainable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch


#: the most a score (a probability) may change with ``batch_size`` or batch composition
BATCH_TOLERANCE = 1e-5


class Scores(NamedTuple):
    """What :meth:`Backend.score` returns."""

    logits: torch.Tensor  # (n_texts, n_labels) float32 on the CPU, caller's label order
    truncated: list[bool]  # per text: True when the text was cut to fit the model


class Backend(ABC):
    """Base class of every backend. Subclasses set ``name`` and implement the five methods."""

    name: ClassVar[str]
    #: template applied to each label (or its description) when the caller gives none
    default_template: ClassVar[str] = "{}"
    #: extra keyword arguments ``Classifier.classify`` may forward to :meth:`score`
    score_options: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    @abstractmethod
    def detect(cls, folder: Path) -> bool:
        """True when ``folder`` holds a checkpoint this backend can load (cheap: reads JSON only)."""

    @classmethod
    @abstractmethod
    def load(
        cls, folder: Path, *, device: torch.device, dtype: torch.dtype | None, **options: Any
    ) -> Backend:
        """Build the backend from a local folder. Unknown ``options`` raise ``TypeError``."""

    @abstractmethod
    def score(
        self, texts: list[str], labels: list[str], *, multi_label: bool, batch_size: int, **kwargs: Any
    ) -> Scores:
        """Score every text against the same label set.

        Args:
            texts: non-empty strings (already validated).
            labels: label strings as the model should read them (template applied), unique.
            multi_label: whether the logits will go through a sigmoid rather than a softmax.
            batch_size: upper bound on what one forward pass holds (texts, or text-label pairs).
            **kwargs: backend-specific options listed in ``score_options``.
        """

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write the weights (safetensors only), tokenizer and backend files into ``folder``."""

    @property
    @abstractmethod
    def options(self) -> dict[str, Any]:
        """JSON-serialisable options that :meth:`load` needs to rebuild this backend exactly."""

    # ------------------------------------------------------------------ optional: fine-tuning
    #: what ``udtc.finetune(method=...)`` may do with this backend, a subset of
    #: {"full", "lora", "qlora", "head"}; empty means the backend cannot be fine-tuned.
    #: "qlora" also means :meth:`load` accepts ``load_in_4bit=True`` (bitsandbytes NF4 weights).
    supported_methods: ClassVar[frozenset[str]] = frozenset()
    #: names of submodules of :meth:`trainable_module` that form a task head: ``method="head"``
    #: trains only these, LoRA trains them in full next to the adapter (peft ``modules_to_save``).
    head_modules: ClassVar[tuple[str, ...]] = ()
    #: layers LoRA wraps by default (peft ``target_modules``); None: peft's default for the architecture.
    lora_targets: ClassVar[tuple[str, ...] | str | None] = None
    #: the backend's own defaults for ``finetune``'s ``lora_r``, ``lora_alpha``, ``lora_dropout`` (else 8, 16, 0.1)
    lora_defaults: ClassVar[dict[str, float]] = {}
    #: BibTeX of the paper the backend implements, for model cards.
    citation: ClassVar[str] = ""

    def prepare_training(self, labels: list[str], *, multi_label: bool, method: str) -> None:
        """Called once before training (and again before resuming) with the training labels.

        E.g. a backend with a fixed-label head builds it here (seeded: a resumed run must get the
        same shapes). The default does nothing.
        """

    def trainable_module(self) -> torch.nn.Module:
        """The module fine-tuning updates: what ``method="full"`` trains and what LoRA wraps.

        peft injects LoRA layers into this module in place, so the backend must keep scoring
        with this same object. A Hugging Face ``PreTrainedModel`` lets peft pick its default
        LoRA target layers.
        """
        raise NotImplementedError(f"the {self.name!r} backend cannot be fine-tuned")

    def training_logits(self, texts: list[str], labels: list[str], *, multi_label: bool) -> torch.Tensor:
        """Logits ``(len(texts), len(labels))`` with autograd on, on the model's device.

        The same function :meth:`score` computes (so softmax cross-entropy or sigmoid BCE on them
        trains what ``classify`` uses), without caches and without ``inference_mode``.
        """
        raise NotImplementedError(f"the {self.name!r} backend cannot be fine-tuned")

    def clear_cache(self) -> None:
        """Forget anything computed from the weights (called before and after training)."""

    def save_adapter_files(self, folder: Path) -> None:
        """Write what a LoRA adapter saved without its base needs besides peft's files (e.g. a head's
        config, the tokenizer). The default writes nothing."""

    def prepare_adapter(self, folder: Path) -> None:
        """Called on the freshly loaded base before the LoRA adapter in ``folder`` is loaded onto it:
        rebuild what the adapter expects (e.g. a head of the saved shape). The default does nothing."""
