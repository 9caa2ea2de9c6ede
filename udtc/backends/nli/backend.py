"""NLI cross-encoder: zero-shot classification as textual entailment (Yin, Hay & Roth, "Benchmarking
Zero-shot Text Classification: Datasets, Evaluation and Entailment Approach", EMNLP 2019,
arXiv 1909.00161, the entailment approach; the paper's text is not in `shared/papers/`, so the
equation numbers below are this module's own). The Classifier applies the template, Eq. (1).

The text is the premise and each label, put into a template, is a hypothesis. A model fine-tuned
on NLI (MNLI, RTE, ...) scores every (premise, hypothesis) pair in one forward pass and gives
logits over its NLI classes (entailment/neutral/contradiction or entailment/not_entailment):

    h_y = template(y)                                  # Eq. (1), default "This example is {}."
    z(x, y) = f([premise x ; hypothesis h_y])          # Eq. (2), logits over the NLI classes
    p(y | x) = softmax_y(z_entail(x, y))               # Eq. (3), single-label: over the label set
    p(y on | x) = softmax([z_c, z_entail])[1]          # Eq. (4), multi-label: each label alone
                = sigmoid(z_entail - z_c)

exactly as transformers' ``pipeline("zero-shot-classification")`` computes them, including its
choice of the "contradiction" class c of Eq. (4): class id 0, or the last class when entailment is
id 0 (so 2-way models use not_entailment, 3-way MNLI models contradiction in either usual order).
Only the premise is ever truncated. Label-set invariant by construction: each pair is scored alone.

Training (``udtc.finetune``, docs/finetune.md): on labelled texts, the loss is cross-entropy over
the labels on Eq. (3)'s logits (single-label) or BCE on Eq. (4)'s (multi-label), i.e. on exactly
what ``score`` returns; on premise/hypothesis pairs (``hypothesis_column=``), it is cross-entropy
over the model's NLI classes on z(x, y) of Eq. (2), the usual NLI objective (Bowman et al., SNLI,
EMNLP 2015). :meth:`NLIBackend.from_encoder` puts a new seeded head (entailment first) on a plain
encoder, so a sentence-embedding model can be trained into an NLI cross-encoder.

Cost is (texts x labels) forward pairs. Premises and hypotheses are tokenised once each; pair
inputs are assembled from the tokenizer's own special-token layout, ordered by length across
texts and labels, padded per batch of ``batch_size`` pairs, so memory is bounded by ``batch_size``
whatever the number of labels.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, cast

import torch

from udtc.backends._text import cap_chars
from udtc.backends.base import Backend, Scores, Trainable
from udtc.backends.nli.config import NEW_HEAD_CLASSES, NLIOptions
from udtc.runtime import seeded

_VERY_LONG = 1_000_000  # tokenizers without a limit report model_max_length ~ 1e30
_HEAD_NAMES = ("classifier", "classification_head", "pooler", "score")  # sequence-classification heads


class PairLayout(NamedTuple):
    """Where a tokenizer puts its special tokens around (premise, hypothesis), with token types."""

    prefix: list[int]
    middle: list[int]
    suffix: list[int]
    prefix_types: list[int]
    middle_types: list[int]
    suffix_types: list[int]
    premise_type: int
    hypothesis_type: int

    @property
    def n_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def assemble(self, premise: list[int], hypothesis: list[int]) -> tuple[list[int], list[int]]:
        ids = self.prefix + premise + self.middle + hypothesis + self.suffix
        types = (self.prefix_types + [self.premise_type] * len(premise) + self.middle_types
                 + [self.hypothesis_type] * len(hypothesis) + self.suffix_types)
        return ids, types


class NLIBackend(Trainable, Backend):
    name: ClassVar[str] = "nli"
    options_class: ClassVar[type[NLIOptions]] = NLIOptions
    default_template: ClassVar[str] = "This example is {}."
    onnx_modules: ClassVar[tuple[str, ...]] = ("model",)  # the sequence-classification model
    citation: ClassVar[str] = (
        "@inproceedings{yin-etal-2019-benchmarking,\n"
        "  title = {Benchmarking Zero-shot Text Classification: Datasets, Evaluation and Entailment Approach},\n"
        "  author = {Yin, Wenpeng and Hay, Jamaal and Roth, Dan},\n"
        "  booktitle = {Proceedings of EMNLP-IJCNLP 2019}, pages = {3914--3923}, year = {2019},\n"
        "  doi = {10.18653/v1/D19-1404}\n}"
    )

    def __init__(self, model, tokenizer, *, max_length: int):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length = int(max_length)
        self.init_seed: int | None = None  # set by ``load`` when it built a new head on a plain encoder
        self.entailment_id, self.contradiction_id = _class_ids(model.config.label2id, model.config.num_labels)
        self.layout = pair_layout(tokenizer)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("not supported yet: a tokenizer with neither pad_token nor eos_token")
        self.pad_id = int(pad)
        self.input_names = [n for n in tokenizer.model_input_names if n in ("input_ids", "token_type_ids", "attention_mask")]
        if self.max_length <= self.layout.n_special + 1:
            raise ValueError(f"max_length={self.max_length} leaves no room for a premise and a hypothesis")

    # ------------------------------------------------------------------ contract
    @classmethod
    def detect(cls, folder: Path) -> bool:
        config = _read_json(folder / "config.json") if folder.is_dir() else None
        if not isinstance(config, dict):
            return False
        archs = config.get("architectures") or []
        label2id = config.get("label2id") or {}
        return any(str(a).endswith("ForSequenceClassification") for a in archs) and _entailment_id(label2id) is not None

    @classmethod
    def load(cls, folder: Path, *, device: torch.device, dtype: torch.dtype | None = None,
             trust_remote_code: bool = False, **options: Any) -> NLIBackend:
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        opts = cls.parse_options(options)
        if not folder.is_dir():
            raise ValueError(f"the nli backend loads a folder, got the file {folder}")
        if opts.init_seed is not None and not cls.detect(folder):  # a plain encoder: a new seeded 2-way head
            backend = cls.from_encoder(folder, list(NEW_HEAD_CLASSES), seed=opts.init_seed, device=device, dtype=dtype,
                                       max_length=opts.max_length, trust_remote_code=trust_remote_code)
            backend.init_seed = opts.init_seed
            return backend
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
        _class_ids(config.label2id, config.num_labels)  # fail before loading weights
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, dtype=dtype or torch.float32, use_safetensors=True, trust_remote_code=trust_remote_code).to(device)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        return cls(model, tokenizer, max_length=opts.max_length or _model_max_length(model.config, tokenizer))

    def score(self, texts: list[str], labels: list[str], *, multi_label: bool, batch_size: int, **kwargs: Any) -> Scores:
        n, n_labels = len(texts), len(labels)
        logits = torch.empty(n * n_labels, self.model.config.num_labels)  # (N * L, C)
        batches, truncated = self.pair_batches(texts, labels, batch_size)
        with torch.inference_mode():
            for pairs, batch in batches:
                logits[pairs] = self.model(**batch).logits.float().cpu()  # (B, C)  Eq. (2)
        return Scores(self._label_logits(logits.view(n, n_labels, -1), multi_label), truncated)

    def _label_logits(self, logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
        """(N, L, C) NLI logits -> (N, L) label logits for the Classifier's softmax or sigmoid."""
        entail = logits[..., self.entailment_id]  # (N, L)  Eq. (3) before the Classifier's softmax
        if multi_label:
            return entail - logits[..., self.contradiction_id]  # Eq. (4): sigmoid(e - c)
        return entail

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    # ------------------------------------------------------------------ fine-tuning (optional contract)
    # Two kinds of training data reach ``training_logits`` (docs/finetune.md, "NLI cross-encoders"):
    # - texts (few-shot classification): the logits ``score`` returns, Eq. (3)/(4), with autograd, so
    #   cross-entropy over the labels trains the pipeline's softmax over labels and BCE its multi-label rule;
    # - (premise, hypothesis) pairs (NLI training, ``finetune(hypothesis_column=...)``): the labels are the
    #   model's NLI classes and the logits are z(x, y) of Eq. (2) for those classes, so cross-entropy is the
    #   usual NLI objective over entailment / neutral / contradiction.
    supported_methods: ClassVar[frozenset[str]] = frozenset({"full", "lora", "sparse"})
    trains_pairs: ClassVar[bool] = True

    @classmethod
    def pair_classes(cls, folder: Path, *, method: str, merge: bool, options: Mapping[str, Any]) -> list[str] | None:
        from udtc.backends.nli.train import pair_classes

        return pair_classes(cls.detect(folder), folder, method=method, merge=merge, options=options)

    def model_pair_classes(self) -> list[str]:
        return self.classes

    @classmethod
    def new_for_pairs(cls, folder: Path, classes: list[str], *, seed: int, device: torch.device,
                      **options: Any) -> NLIBackend:
        return cls.from_encoder(folder, classes, seed=seed, device=device, **options)

    @classmethod
    def pair_targets(cls, data: Any, classes: list[str] | None, what: str = "train") -> Any:
        from udtc.backends.nli.train import pair_targets

        return pair_targets(data, classes, what)

    @classmethod
    def from_encoder(cls, folder: Path, classes: list[str], *, seed: int = 0, device: torch.device,
                     dtype: torch.dtype | None = None, max_length: int | None = None,
                     trust_remote_code: bool = False) -> NLIBackend:
        """A new NLI cross-encoder: the encoder in ``folder`` (e.g. all-MiniLM-L6-v2) with a fresh
        classification head over ``classes`` (label2id in that order), initialised from ``seed``."""
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        label2id = {name: i for i, name in enumerate(classes)}
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code, num_labels=len(classes),
                                            label2id=label2id, id2label={i: n for n, i in label2id.items()})
        _class_ids(config.label2id, config.num_labels)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "some weights were newly initialized": the head, on purpose
        try:
            with seeded(seed):
                model = AutoModelForSequenceClassification.from_pretrained(
                    folder, config=config, dtype=dtype or torch.float32, use_safetensors=True,
                    trust_remote_code=trust_remote_code).to(device)
        finally:
            hf_logging.set_verbosity(verbosity)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        return cls(model, tokenizer, max_length=max_length or _model_max_length(model.config, tokenizer))

    @property
    def classes(self) -> list[str]:
        """The model's NLI classes in id order (``config.id2label``)."""
        return [name for name, _ in sorted(self.model.config.label2id.items(), key=lambda item: item[1])]

    @property
    def head_modules(self) -> tuple[str, ...]:
        """The classification head (and the pooler it reads, if any): trained in full next to a LoRA adapter."""
        names = [name for name, _ in self.model.named_modules()
                 if name.rsplit(".", 1)[-1] in _HEAD_NAMES and name.count(".") <= 1]
        return tuple(n for n in names if not any(n.startswith(f"{m}.") for m in names))

    def trainable_module(self) -> torch.nn.Module:
        return self.model

    def training_logits(self, texts: list[str] | list[tuple[str, str]], labels: list[str], *,
                        multi_label: bool) -> torch.Tensor:
        if texts and isinstance(texts[0], tuple):
            columns = [self._class_of(label) for label in labels]
            return self._pair_forward([p for p, _ in texts], [h for _, h in texts], len(texts))[:, columns]  # (B, L)
        n, n_labels = len(texts), len(labels)
        (pairs, batch), = list(self.pair_batches(cast(list[str], texts), labels, n * n_labels)[0])
        logits = self.model(**batch).logits.float()  # (N * L, C) longest pairs first  Eq. (2)
        logits = logits[torch.argsort(torch.tensor(pairs, device=logits.device))]  # (N * L, C) in pair order
        return self._label_logits(logits.view(n, n_labels, -1), multi_label)  # (N, L)

    def pair_logits(self, premises: list[str], hypotheses: list[str], *, batch_size: int = 32) -> torch.Tensor:
        """NLI logits ``(N, C)`` of premise ``i`` with hypothesis ``i``, classes in :attr:`classes` order
        (softmax over the last axis gives p(entailment / neutral / contradiction))."""
        if len(premises) != len(hypotheses):
            raise ValueError(f"got {len(premises)} premises and {len(hypotheses)} hypotheses; pass one hypothesis each")
        with torch.inference_mode():
            return torch.cat([self._pair_forward(premises[i : i + batch_size], hypotheses[i : i + batch_size],
                                                 batch_size).float().cpu()
                              for i in range(0, len(premises), batch_size)]) if premises else torch.empty(0, len(self.classes))

    def _pair_forward(self, premises: list[str], hypotheses: list[str], batch_size: int) -> torch.Tensor:
        """Logits ``(N, C)`` of row-wise pairs, in the caller's order. A pair too long for ``max_length`` is cut
        from the premise first; the hypothesis keeps at least half the room."""
        room = self.max_length - self.layout.n_special
        p_ids, _ = self._tokenize(premises)
        h_ids, _ = self._tokenize(hypotheses)
        rows = []
        for p, h in zip(p_ids, h_ids):
            h_keep = min(len(h), room - min(len(p), room // 2))
            rows.append(self.layout.assemble(self._cut(p, room - h_keep), h[:h_keep]))
        out = [self.model(**self._pad(rows[i : i + batch_size])).logits for i in range(0, len(rows), batch_size)]
        return torch.cat(out).float()  # (N, C)  Eq. (2)

    def _class_of(self, label: str) -> int:
        """The class id a pair-training label names (the training loop passes pair classes as named)."""
        for name, index in self.model.config.label2id.items():
            if label == name:
                return int(index)
        raise ValueError(f"{label!r} is not one of this model's NLI classes {self.classes}")

    # ------------------------------------------------------------------ pairs
    def pair_batches(self, texts: list[str], hypotheses: list[str], batch_size: int
                     ) -> tuple[Iterator[tuple[list[int], dict[str, torch.Tensor]]], list[bool]]:
        """Model inputs for every (text, hypothesis) pair, ``batch_size`` pairs at a time.

        Returns a lazy iterator of ``(pair indices, batch)`` (pair ``k`` is text ``k // len(hypotheses)``
        with hypothesis ``k % len(hypotheses)``; longest pairs first) and, per text, whether it was
        truncated. Each text and hypothesis is tokenised once; only the premise is cut ("only_first").
        """
        premises, cut = self._tokenize(texts)  # N lists of ids, no special tokens
        hyps, _ = self._tokenize(hypotheses)  # L lists of ids
        room = self.max_length - self.layout.n_special
        for hypothesis, ids in zip(hypotheses, hyps):
            if len(ids) >= room:
                raise ValueError(f"the hypothesis {hypothesis!r} is {len(ids)} tokens; with the premise it must fit in "
                                 f"max_length={self.max_length} ({self.layout.n_special} special tokens): shorten it")
        p_len = torch.tensor([len(p) for p in premises])  # (N,)
        h_len = torch.tensor([len(h) for h in hyps])  # (L,)
        keep = torch.minimum(p_len[:, None], room - h_len[None, :])  # (N, L) premise tokens kept
        truncated = [c or k for c, k in zip(cut, (keep < p_len[:, None]).any(1).tolist())]
        total = (keep + h_len[None, :]).flatten()  # (N * L,) pair lengths, less the special tokens
        order = torch.argsort(total, descending=True, stable=True).tolist()  # longest first: peak memory up front
        keep_list, n_hyps = keep.flatten().tolist(), len(hyps)

        def batches() -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
            for start in range(0, len(order), batch_size):
                pairs = order[start : start + batch_size]
                rows = [self.layout.assemble(self._cut(premises[k // n_hyps], keep_list[k]), hyps[k % n_hyps])
                        for k in pairs]
                yield pairs, self._pad(rows)

        return batches(), truncated

    def _tokenize(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Token ids without special tokens; special-token strings in ``texts`` stay plain text."""
        capped, cut = cap_chars(texts, self.max_length)
        ids = self.tokenizer(capped, add_special_tokens=False, split_special_tokens=True,
                             truncation=False, verbose=False, return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"]
        return ids, cut

    def _cut(self, premise: list[int], keep: int) -> list[int]:
        if keep >= len(premise):
            return premise
        return premise[len(premise) - keep :] if self.tokenizer.truncation_side == "left" else premise[:keep]

    def _pad(self, rows: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
        """Right-pad assembled pairs to the longest in the batch (right padding keeps absolute positions)."""
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)  # (B, T)
        token_type_ids = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
        for r, (ids, types) in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            token_type_ids[r, : len(ids)] = torch.tensor(types)
            attention_mask[r, : len(ids)] = 1
        batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
        return {name: batch[name].to(self.device) for name in self.input_names}


def pair_layout(tokenizer) -> PairLayout:
    """Read the tokenizer's special-token layout for a pair from one encoded example, then check it."""
    probe_a, probe_b = "a b c", "d e"
    a = tokenizer(probe_a, add_special_tokens=False)["input_ids"]
    b = tokenizer(probe_b, add_special_tokens=False)["input_ids"]
    if not a or not b:
        raise ValueError(f"not supported yet: a tokenizer that encodes {probe_a!r} as {a} and {probe_b!r} as {b}")
    full = tokenizer(probe_a, probe_b, return_special_tokens_mask=True, return_token_type_ids=True)
    ids, mask = full["input_ids"], full["special_tokens_mask"]
    types = full.get("token_type_ids") or [0] * len(ids)
    plain = [i for i, m in enumerate(mask) if not m]
    if [ids[i] for i in plain] != a + b:
        raise ValueError(f"not supported yet: tokenizer pair layout={ids} (premise {a}, hypothesis {b})")
    a_pos, b_pos = plain[: len(a)], plain[len(a) :]
    if a_pos != list(range(a_pos[0], a_pos[-1] + 1)) or b_pos != list(range(b_pos[0], b_pos[-1] + 1)):
        raise ValueError(f"not supported yet: tokenizer pair layout={ids} (premise or hypothesis not contiguous)")
    if len({types[i] for i in a_pos}) != 1 or len({types[i] for i in b_pos}) != 1:
        raise ValueError(f"not supported yet: tokenizer token types={types} within one segment")
    s0, e0, s1, e1 = a_pos[0], a_pos[-1] + 1, b_pos[0], b_pos[-1] + 1
    layout = PairLayout(ids[:s0], ids[e0:s1], ids[e1:], types[:s0], types[e0:s1], types[e1:], types[s0], types[s1])
    # the same layout must rebuild a pair of other lengths
    a2 = tokenizer("a", add_special_tokens=False)["input_ids"]
    b2 = tokenizer("d e f g", add_special_tokens=False)["input_ids"]
    again = tokenizer("a", "d e f g", return_token_type_ids=True)
    rebuilt_ids, rebuilt_types = layout.assemble(a2, b2)
    if rebuilt_ids != again["input_ids"] or rebuilt_types != (again.get("token_type_ids") or [0] * len(rebuilt_ids)):
        raise ValueError(f"not supported yet: tokenizer pair layout={again['input_ids']} (depends on lengths)")
    return layout


def _entailment_id(label2id: dict) -> int | None:
    """The id of the first label starting with "entail" (any case), as the transformers pipeline picks it."""
    for label, index in label2id.items():
        if str(label).lower().startswith("entail"):
            return int(index)
    return None


def _class_ids(label2id: dict, num_labels: int) -> tuple[int, int]:
    """(entailment id, id of the class Eq. (4) contrasts it with), as in the zero-shot pipeline."""
    entail = _entailment_id(label2id or {})
    if entail is None:
        names = [name for name, _ in sorted((label2id or {}).items(), key=lambda item: item[1])]
        raise ValueError(f"this model has no entailment label: its labels are {names} (config.label2id); the nli "
                         "backend needs an NLI model whose labels include 'entailment' (e.g. entailment/neutral/"
                         "contradiction or entailment/not_entailment)")
    if num_labels < 2:
        raise ValueError(f"not supported yet: num_labels={num_labels}")
    if not 0 <= entail < num_labels:
        raise ValueError(f"config.label2id gives entailment the id {entail}, but the model has {num_labels} classes")
    return entail, (num_labels - 1 if entail == 0 else 0)


def _model_max_length(config, tokenizer) -> int:
    """The tokenizer's limit (what the pipeline truncates to), capped by the model's positions."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is not None and getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # these models offset their position ids by 2
    limit = tokenizer.model_max_length if tokenizer.model_max_length < _VERY_LONG else None
    values = [v for v in (limit, positions) if v]
    if not values:
        raise ValueError("neither the tokenizer nor the model config states a maximum length; pass max_length=")
    return int(min(values))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
