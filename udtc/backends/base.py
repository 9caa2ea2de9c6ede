"""The backend contract: every scoring method in udtc implements this small interface.

A backend (:class:`Backend`, also exported as ``Scorer``) scores texts against one label set
and returns raw logits shaped ``(n_texts, n_labels)`` in the caller's label order. It implements
``detect``, ``load``, ``score`` and ``save`` and declares its options as one dataclass
(``options_class``, a subclass of :class:`Options`), which is what ``udtc_config.json`` stores.
The :class:`~udtc.Classifier` owns everything else (input checks, label templates, grouping texts
by label set, batching, ``inference_mode``, softmax/sigmoid, thresholds, result objects), so a
backend stays a few hundred lines.

Normalisation rule: single-label probabilities are ``softmax(logits, -1)`` and multi-label
probabilities are ``sigmoid(logits)``; a backend that has its own multi-label rule (e.g. NLI's
softmax over [contradiction, entailment]) returns logits for which sigmoid gives that rule.

Label-set invariance is part of the contract: permuting ``labels`` must permute the returned
columns and change nothing else (|difference| <= 1e-5). ``tests/test_contract.py`` checks it
for every registered backend.

Mixed label sets (optional): a backend whose text side does not depend on the label set (cosine, SCE)
sets ``mixed_label_sets`` and overrides :meth:`Backend.score_each`, which scores each text of one batch
against its own label set with one pass over the texts; the Classifier then batches texts across label sets
(concurrent ``udtc serve`` requests with different label sets share a forward pass). The default
``score_each`` groups the texts by label set and calls ``score`` per group.

Batching tolerance: ``batch_size`` and which texts share a batch may change a score by at most
:data:`BATCH_TOLERANCE` (1e-5 in probability; 2.6e-6 was the largest change measured). Padding a text
to a longer batch changes the order of float32 sums in attention and pooling, so scores are not
bit-identical across batch sizes; they are identical for the same inputs and ``batch_size``.
``tests/test_contract.py`` checks it for every registered backend.

Fine-tuning (optional): a backend that ``udtc.finetune`` can train also derives from
:class:`Trainable`, lists the methods it allows in ``supported_methods`` and implements
:meth:`Trainable.trainable_module` and :meth:`Trainable.training_logits`. Its special cases
(a new head, extra load options, premise/hypothesis pairs) come in through the hooks of
:class:`Trainable`; the training code (``udtc/training/``) never names a backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch


#: the most a score (a probability) may change with ``batch_size`` or batch composition
BATCH_TOLERANCE = 1e-5


class Scores(NamedTuple):
    """What :meth:`Backend.score` returns."""

    logits: torch.Tensor  # (n_texts, n_labels) float32 on the CPU, caller's label order
    truncated: list[bool]  # per text: True when the text was cut to fit the model


O = TypeVar("O", bound="Options")


@dataclass
class Options:
    """Base of a backend's options dataclass: the fields are the options ``load`` takes and
    ``udtc_config.json`` stores (fields with ``metadata={"saved": False}`` are load-time only)."""

    @classmethod
    def parse(cls: type[O], backend: str, given: Mapping[str, Any], *, extra: tuple[str, ...] = ()) -> O:
        """The options in ``given``; a key that is neither a field nor in ``extra`` is a ``TypeError``
        naming every option the backend takes. Keys in ``extra`` are left to the caller."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(given) - set(known) - set(extra))
        if unknown:
            raise TypeError(f"{backend} backend got unknown options {unknown}; it takes {sorted({*known, *extra})}")
        options = cls(**{k: v for k, v in given.items() if k in known})
        check_max_length(getattr(options, "max_length", None))
        return options

    def to_dict(self) -> dict[str, Any]:
        """The saved options (JSON-serialisable), in field order."""
        values = asdict(self)
        return {f.name: values[f.name] for f in fields(self) if f.metadata.get("saved", True)}


def check_max_length(value: Any, where: str = "max_length") -> None:
    """Every backend's token limit: None (the model's own) or a positive integer."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{where} must be a positive integer, got {value!r}")


@dataclass
class NoOptions(Options):
    """For a backend without options."""


class Backend(ABC):
    """The scorer contract. Subclasses set ``name`` and ``options_class`` and implement ``detect``,
    ``load``, ``score`` and ``save``."""

    name: ClassVar[str]
    #: the backend's options: one dataclass, the single list of their names and defaults
    options_class: ClassVar[type[Options]] = NoOptions
    #: template applied to each label (or its description) when the caller gives none
    default_template: ClassVar[str] = "{}"
    #: extra keyword arguments ``Classifier.classify`` may forward to :meth:`score`
    score_options: ClassVar[frozenset[str]] = frozenset()
    #: those of ``score_options`` a caller may give per text (a list, one value per text); ``score`` then
    #: receives the values of its own texts, in their order
    per_text_options: ClassVar[frozenset[str]] = frozenset()
    #: attribute paths of the torch networks ``udtc export`` writes as ONNX graphs (udtc/onnx_export.py); each is
    #: called with keyword tensors or one NamedTuple of tensors and returns a tensor or a ModelOutput. Empty: no export
    onnx_modules: ClassVar[tuple[str, ...]] = ()
    #: True when :meth:`score_each` reads a batch's texts in one pass whatever their label sets (the text side
    #: does not depend on the labels): the Classifier then batches texts across label sets
    mixed_label_sets: ClassVar[bool] = False

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

    def score_each(
        self, texts: list[str], label_sets: list[list[str]], *, multi_label: bool, batch_size: int, **kwargs: Any
    ) -> Scores:
        """Score each text against its own label set (arguments as :meth:`score`): logits ``(n_texts, widest
        label set)``, row ``i``'s first ``len(label_sets[i])`` columns in its label order, the rest ``-inf``.

        The default groups the texts by label set and calls :meth:`score` once per group.
        """
        logits = torch.full((len(texts), max(map(len, label_sets))), float("-inf"))  # (N, widest set)
        truncated = [False] * len(texts)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, labels in enumerate(label_sets):
            groups.setdefault(tuple(labels), []).append(i)
        for names, indices in groups.items():
            out = self.score([texts[i] for i in indices], list(names), multi_label=multi_label,
                             batch_size=batch_size, **kwargs)
            logits[indices, : len(names)] = out.logits.float().cpu()
            for row, i in enumerate(indices):
                truncated[i] = out.truncated[row]
        return Scores(logits, truncated)

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write the weights (safetensors only), tokenizer and backend files into ``folder``."""

    @property
    def device(self) -> torch.device:
        """Where the weights are: those of the ``model`` attribute, by convention (a backend that keeps its
        network elsewhere overrides this)."""
        return next(getattr(self, "model").parameters()).device

    @property
    def options(self) -> dict[str, Any]:
        """JSON-serialisable options that :meth:`load` needs to rebuild this backend exactly: the saved
        fields of ``options_class``, read from the attributes of the same names."""
        saved = [f.name for f in fields(self.options_class) if f.metadata.get("saved", True)]
        return self.options_class(**{name: getattr(self, name) for name in saved}).to_dict()

    @classmethod
    def parse_options(cls, options: Mapping[str, Any], *, extra: tuple[str, ...] = ()) -> Any:
        """``options`` as an ``options_class`` instance; unknown keys are a ``TypeError``."""
        return cls.options_class.parse(cls.name, options, extra=extra)

    #: BibTeX of the paper the backend implements, for model cards.
    citation: ClassVar[str] = ""


def label_index(distinct: list[str], label_sets: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """For :meth:`Backend.score_each`: -> (``(N, L)`` column of each text's labels in ``distinct``, padded with 0;
    ``(N, L)`` True where a row is padding), L the widest label set."""
    column = {x: j for j, x in enumerate(distinct)}
    width = max(map(len, label_sets))
    index = torch.tensor([[column[x] for x in labels] + [0] * (width - len(labels)) for labels in label_sets])
    pad = torch.arange(width) >= torch.tensor([len(labels) for labels in label_sets])[:, None]
    return index, pad


#: the contract's name in docs/architecture.md; ``Backend`` stays the public name
Scorer = Backend


class Trainable(ABC):
    """Mixin of a backend ``udtc.finetune`` can train (``class MyBackend(Trainable, Backend)``).

    The training loop (``udtc/training/``) owns LoRA through peft, the optimiser, checkpoints,
    evaluation and distributed runs; a backend brings only what is its own, through these hooks.
    """

    name: ClassVar[str]
    default_template: ClassVar[str]

    #: what ``udtc.finetune(method=...)`` may do with this backend, a subset of
    #: {"full", "lora", "qlora", "head", "instruction"}; empty means the backend cannot be fine-tuned.
    #: "qlora" also means :meth:`load` accepts ``load_in_4bit=True`` (bitsandbytes NF4 weights).
    supported_methods: ClassVar[frozenset[str]] = frozenset()
    #: layers LoRA wraps by default (peft ``target_modules``); None: peft's default for the architecture.
    lora_targets: ClassVar[tuple[str, ...] | str | None] = None
    #: the backend's own defaults for ``finetune``'s ``lora_r``, ``lora_alpha``, ``lora_dropout`` (else 8, 16, 0.1)
    lora_defaults: ClassVar[dict[str, float]] = {}
    #: per method, the benchmarked recipe ``finetune`` uses when the caller leaves ``learning_rate`` /
    #: ``epochs`` unset, e.g. ``{"lora": {"learning_rate": 3e-3, "epochs": 10}}`` (else by method: see
    #: ``udtc.training.args.DEFAULT_LEARNING_RATES``, 10 epochs)
    training_recipes: ClassVar[dict[str, dict[str, float]]] = {}
    #: per method, BibTeX of the paper it implements, for the model card of a model trained that way
    method_citations: ClassVar[dict[str, str]] = {}
    #: True when the backend trains on (premise, hypothesis) pairs (``finetune(hypothesis_column=...)``)
    trains_pairs: ClassVar[bool] = False

    @property
    def head_modules(self) -> tuple[str, ...]:
        """Names of submodules of :meth:`trainable_module` that form a task head: ``method="head"``
        trains only these, LoRA trains them in full next to the adapter (peft ``modules_to_save``)."""
        return ()

    def prepare_training(self, labels: list[str], *, multi_label: bool, method: str) -> None:
        """Called once before training (and again before resuming) with the training labels.

        E.g. a backend with a fixed-label head builds it here (seeded: a resumed run must get the
        same shapes). The default does nothing.
        """

    @abstractmethod
    def trainable_module(self) -> torch.nn.Module:
        """The module fine-tuning updates: what ``method="full"`` trains and what LoRA wraps.

        peft injects LoRA layers into this module in place, so the backend must keep scoring
        with this same object. A Hugging Face ``PreTrainedModel`` lets peft pick its default
        LoRA target layers.
        """

    @abstractmethod
    def training_logits(self, texts: list[str], labels: list[str], *, multi_label: bool) -> torch.Tensor:
        """Logits ``(len(texts), len(labels))`` with autograd on, on the model's device.

        The same function :meth:`score` computes (so softmax cross-entropy or sigmoid BCE on them
        trains what ``classify`` uses), without caches and without ``inference_mode``. For
        pair data (``trains_pairs``), ``texts`` are ``(premise, hypothesis)`` tuples and ``labels``
        the pair classes, as named (no template).
        """

    def clear_cache(self) -> None:
        """Forget anything computed from the weights (called before and after training)."""

    def save_adapter_files(self, folder: Path) -> None:
        """Write what a LoRA adapter saved without its base needs besides peft's files (e.g. a head's
        config, the tokenizer). The default writes nothing."""

    def prepare_adapter(self, folder: Path) -> None:
        """Called on the freshly loaded base before the LoRA adapter in ``folder`` is loaded onto it:
        rebuild what the adapter expects (e.g. a head of the saved shape). The default does nothing."""

    # ------------------------------------------------------------------ finetune hooks (classmethods: before loading)
    @classmethod
    def training_load_options(cls, method: str) -> dict[str, Any]:
        """Options ``finetune`` adds when it loads the model for ``method`` (e.g. 4-bit weights for QLoRA)."""
        return {}

    @classmethod
    def pair_classes(cls, folder: Path, *, method: str, merge: bool, options: Mapping[str, Any]) -> list[str] | None:
        """Pair training: the classes of the model in ``folder`` (config files only), or None when it gets a
        new head (:meth:`new_for_pairs`). Refuses what cannot be trained. Only for ``trains_pairs`` backends."""
        raise NotImplementedError(f"the {cls.name!r} backend does not train on pairs")

    def model_pair_classes(self) -> list[str]:
        """The pair classes of this loaded model, in id order."""
        raise NotImplementedError(f"the {self.name!r} backend does not train on pairs")

    @classmethod
    def new_for_pairs(cls, folder: Path, classes: list[str], *, seed: int, device: torch.device,
                      **options: Any) -> Backend:
        """A new model with a fresh seeded head over ``classes`` on the encoder in ``folder``."""
        raise NotImplementedError(f"the {cls.name!r} backend does not train on pairs")

    @classmethod
    def pair_targets(cls, data: Any, classes: list[str] | None, what: str = "train") -> Any:
        """Pair rows (``udtc.training.data.Examples``) with each label renamed to the class it names;
        ``classes`` None (a new head): chosen from the data's labels."""
        raise NotImplementedError(f"the {cls.name!r} backend does not train on pairs")
