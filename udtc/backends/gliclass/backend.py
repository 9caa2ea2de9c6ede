"""GLiClass uni-encoder (Stepanov et al., "GLiClass: Generalist Lightweight Model for Sequence
Classification Tasks", arXiv:2508.07662, Sec. 2.1, Eq. (1)-(12); `shared/papers/gliclass.txt`).

The text and every label go through one encoder in a single sequence (Sec. 2.1.2)::

    [CLS] text <<LABEL>> label_1 <<LABEL>> label_2 ... <<SEP>> prompt examples [SEP]     prompt_first=False
    [CLS] <<LABEL>> label_1 ... <<SEP>> prompt text examples [SEP]                       prompt_first=True

so one forward pass scores the whole label set (Eq. (9)-(12), module in ``gliclass_model.py``). Logits
are returned raw: the Classifier applies a softmax over the label set (single-label) or a sigmoid per
label (multi-label), exactly as gliclass's ``ZeroShotClassificationPipeline`` does.

What udtc adds around the reference implementation (gliclass 0.1.21):

* label-set invariance: labels are always written in one canonical order (sorted by their string),
  so permuting the caller's labels permutes the scores and changes nothing else; gliclass's scores
  equal udtc's when gliclass is given ``sorted(labels)``;
* the user's text, labels, prompt and examples are tokenised as plain text: a ``<<LABEL>>`` or
  ``[SEP]`` they contain is characters, never a structural token;
* long inputs: the text's tokens are cut (and flagged), labels never are; a label set too long for
  one pass is split into chunks, each scored with the full text budget it leaves, and the logits
  are concatenated (single-label then takes one softmax over all of them).

Training (``udtc.finetune``, methods ``full`` and ``lora``): ``training_logits`` is the function ``score``
computes, with autograd; in train mode each call writes the labels in a new random order and maps the
logits back (label shuffling, as GLiClass is trained, Sec. 2.3), so the model must read the labels
rather than learn their slots. ``load`` on a plain encoder folder builds a new model on it (``from_encoder``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from udtc.backends._text import LabelCache, cap_chars, pack, special_ids, token_id
from udtc.backends.base import Backend, Scores, Trainable
from udtc.backends.gliclass.config import GLiClassOptions
from udtc.backends.gliclass.model import (EXAMPLE_TOKEN, LABEL_TOKEN, SEP_TOKEN, GLiClassConfig, GLiClassUniEncoder,
                                          Inputs, build_module)
from udtc.citations import GLICLASS_CITATION
from udtc.config import read_json, write_json
from udtc.logs import get_logger

logger = get_logger(__name__)

_DEFAULT_MAX_LENGTH = 1024  # gliclass's pipeline default (the v3 models are trained on 1024 tokens)
_MIN_TEXT_TOKENS = 64  # a label chunk leaves at least this many tokens (or max_length // 4) to the text
_CACHE_SIZE = 4096
#: LoRA targets: the attention and feed-forward linear layers of the encoder's blocks (BERT, RoBERTa, ELECTRA,
#: DeBERTa: query/key/value(_proj), dense; ModernBERT: Wqkv, Wo, Wi), as in the paper's Table 1; not the pooler
LORA_TARGETS = (r"encoder_model\.(?:encoder|layers)\..*\."
                r"(?:query|key|value|dense|query_proj|key_proj|value_proj|in_proj|Wqkv|Wo|Wi)")
_HEADS = ("text_projector", "classes_projector", "scorer", "lstm", "layer_wise_attention")
_CITATION = GLICLASS_CITATION
#: what ``load`` builds on a plain encoder unless told otherwise: mean pooling, as sentence encoders are
#: trained, and label features averaged over the label's tokens (they read the label's words directly)
NEW_MODEL_DEFAULTS = {"pooling_strategy": "avg", "class_token_pooling": "average"}


@dataclass
class _Chunk:
    columns: list[int]  # caller's label indices scored by this pass, in canonical order
    block: list[int]  # <<LABEL>> label_1 <<LABEL>> label_2 ... <<SEP>>
    class_offsets: list[int]  # position of each <<LABEL>> inside block
    text_budget: int  # text tokens this pass has room for


class GLiClassBackend(Trainable, Backend):
    name: ClassVar[str] = "gliclass"
    options_class: ClassVar[type[GLiClassOptions]] = GLiClassOptions
    score_options: ClassVar[frozenset[str]] = frozenset({"examples", "prompt"})
    per_text_options: ClassVar[frozenset[str]] = frozenset({"prompt"})  # gliclass's per-text task descriptions
    onnx_modules: ClassVar[tuple[str, ...]] = ("model",)  # the whole uni-encoder: encoder, pooling, scorer
    supported_methods: ClassVar[frozenset[str]] = frozenset({"full", "lora", "sparse"})
    #: benchmarks/few_shot.py (GLICLASS_RECIPES): chosen on a validation split, 8 shots per label
    training_recipes: ClassVar[dict[str, dict[str, float]]] = {"full": {"learning_rate": 3e-4, "epochs": 20},
                                                               "lora": {"learning_rate": 1e-3, "epochs": 30}}
    lora_targets: ClassVar[str] = LORA_TARGETS
    citation: ClassVar[str] = _CITATION

    def __init__(self, model: GLiClassUniEncoder, tokenizer: Any, raw_config: dict[str, Any], *,
                 max_length: int | None = None):
        self.model, self.tokenizer, self.raw_config = model.eval(), tokenizer, raw_config
        self.config: GLiClassConfig = model.config
        self.label_id, self.sep_id = self.config.class_token_index, self.config.text_token_index
        for token, expected in ((LABEL_TOKEN, self.label_id), (SEP_TOKEN, self.sep_id)):
            if token_id(tokenizer, token) != expected:
                raise ValueError(f"the tokenizer maps {token} to id {token_id(tokenizer, token)} but the gliclass "
                                 f"config says {expected}; the tokenizer does not belong to this model")
        example_id = token_id(tokenizer, EXAMPLE_TOKEN)
        self.example_id = example_id if example_id == self.config.example_token_index else None
        _markers_special(tokenizer)
        limit = _position_limit(model.encoder_model)
        if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool)):
            raise TypeError(f"max_length must be an integer, got {max_length!r}")
        self.max_length = max_length or min(_DEFAULT_MAX_LENGTH, limit or _DEFAULT_MAX_LENGTH)
        if self.max_length < 16 or (limit is not None and self.max_length > limit):
            raise ValueError(f"max_length={self.max_length} is out of range: this encoder reads 16 to {limit} tokens")
        self.prefix, self.suffix = special_ids(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._label_cache: LabelCache[list[int]] = LabelCache(_CACHE_SIZE)
        self._plan_cache: LabelCache[list[_Chunk]] = LabelCache(64)  # per (label set, tail, order)
        self._tail_memo: tuple[Any, Any] = (None, None)
        #: how a model built on a plain encoder was initialised, so that ``load`` rebuilds it (LoRA base)
        self.init_options: dict[str, Any] = {}

    @property
    def head_modules(self) -> tuple[str, ...]:
        """GLiClass's own layers (with weights): trained in full next to a LoRA adapter on the encoder."""
        return tuple(n for n in _HEADS if any(True for _ in getattr(self.model, n, torch.nn.Identity()).parameters()))

    # ------------------------------------------------------------------ contract
    @classmethod
    def detect(cls, folder: Path) -> bool:
        config = read_json(folder / "config.json", {}) if folder.is_dir() else {}
        return isinstance(config, dict) and str(config.get("model_type", "")).lower() == "gliclass"

    @classmethod
    def load(cls, folder: Path, *, device: torch.device, dtype: torch.dtype | None = None,
             trust_remote_code: bool = False, **options: Any) -> GLiClassBackend:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        opts = cls.parse_options(options)
        init = opts.new_model()
        options = {"max_length": opts.max_length} if "max_length" in options else {}
        if not cls.detect(folder):  # a plain encoder: a new, untrained GLiClass model on top of it
            seeded = "init_seed" in init
            backend = cls.from_encoder(folder, seed=init.pop("init_seed", 0), device=device,
                                       trust_remote_code=trust_remote_code, **options, **{**NEW_MODEL_DEFAULTS, **init})
            if not seeded:  # said once the model is built: a folder that is no encoder raises instead
                logger.warning(f"{folder} is not a GLiClass checkpoint: built a new GLiClass model on its encoder, with "
                               "untrained projection layers (init_seed=0); its scores mean nothing until it is fine-tuned "
                               "(udtc.finetune); pass init_seed= to silence this")
            return backend if dtype is None else backend._to(dtype)
        raw = read_json(folder / "config.json")
        for key, value in init.items():
            if key != "init_seed" and raw.get(key, getattr(GLiClassConfig, key, None)) != value:
                raise ValueError(f"{key}={value!r} applies when a new model is built on a plain encoder; {folder} is a "
                                 f"GLiClass checkpoint with {key}={raw.get(key)!r}")
        config = GLiClassConfig.from_dict(raw)
        weights = folder / "model.safetensors"
        if not weights.exists():
            found = ", ".join(sorted(p.name for p in folder.glob("*.bin"))) or "none"
            raise ValueError(f"{folder} has no model.safetensors (pickle weights found: {found}); udtc loads safetensors "
                             "only: convert with GLiClassModel.from_pretrained(...).save_pretrained(..., safe_serialization=True)")
        state = {k.removeprefix("model."): v for k, v in load_file(weights).items()}
        module = build_module(config, state).to(device)
        if dtype is not None:
            module.to(dtype)
        # the encoder's config tells AutoTokenizer the model family (it does not know model_type GLiClass)
        tokenizer = AutoTokenizer.from_pretrained(folder, config=module.encoder_model.config,
                                                  trust_remote_code=trust_remote_code)
        return cls(module, tokenizer, raw, **options)

    @classmethod
    def from_encoder(cls, path: str | Path, *, max_length: int | None = None, seed: int | None = None,
                     device: str | torch.device = "cpu", trust_remote_code: bool = False,
                     **gliclass_options: Any) -> GLiClassBackend:
        """A new, untrained GLiClass uni-encoder on top of a local encoder folder.

        Adds ``<<LABEL>>``, ``<<SEP>>`` and ``<<EXAMPLE>>`` to the tokenizer (their embeddings are drawn
        per dimension from the mean and standard deviation of the vocabulary's), initialises projectors
        and scorer as gliclass does (normal, std ``initializer_range``), and records the encoder's config
        so gliclass and udtc both load the saved folder. With a ``seed`` the new weights depend only on
        the encoder and the seed (the global RNG is left alone), so ``load`` can rebuild the same model.

        Args:
            path: a transformers encoder folder or a sentence-transformers folder (e.g. all-MiniLM-L6-v2).
            max_length: tokens per forward pass; the encoder's limit (at most 1024) when None.
            seed: seed for the new weights (None: the global torch RNG).
            device: where the model lives.
            trust_remote_code: passed to the tokenizer.
            **gliclass_options: gliclass config fields, e.g. ``pooling_strategy="avg"``, ``scorer_type="mlp"``
                (see ``NEW_MODEL_OPTIONS``).
        """
        from udtc.backends.gliclass.train import build_on_encoder

        return build_on_encoder(cls, Path(path), max_length=max_length, seed=seed, device=device,
                                trust_remote_code=trust_remote_code, **gliclass_options)

    def score(self, texts: list[str], labels: list[str], *, multi_label: bool, batch_size: int,
              examples: list[dict[str, Any]] | None = None, prompt: str | list[str | None] | None = None,
              **kwargs: Any) -> Scores:
        if kwargs:
            raise TypeError(f"gliclass score() got unknown options {sorted(kwargs)}; it takes ['examples', 'prompt']")
        prompts = prompt if isinstance(prompt, list) else [prompt] * len(texts)  # one task description per text
        logits = torch.empty(len(texts), len(labels))  # (N, L), caller's label order
        truncated = [False] * len(texts)
        with torch.inference_mode():  # the Classifier hands over at most batch_size texts: one pass per label chunk
            for shared in dict.fromkeys(prompts):  # texts with the same prompt share a pass
                rows = [i for i, p in enumerate(prompts) if p == shared]
                for inputs, columns, cut in self.build_inputs([texts[i] for i in rows], labels, examples=examples,
                                                              prompt=shared):
                    logits[torch.tensor(rows)[:, None], torch.tensor(columns)[None, :]] = self.model(inputs).float().cpu()
                    for row, c in zip(rows, cut):
                        truncated[row] = truncated[row] or c
        return Scores(logits, truncated)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        raw = dict(self.raw_config)
        vocab = self.model.encoder_model.get_input_embeddings().num_embeddings
        raw.update(model_type="GLiClass", vocab_size=vocab, encoder_config={**raw["encoder_config"], "vocab_size": vocab})
        # gliclass builds Path(encoder_model_name) when it loads a model, so it must be a string
        if not raw.get("encoder_model_name"):
            raw["encoder_model_name"] = raw.get("encoder_model") or raw["encoder_config"].get("model_type", "encoder")
        write_json(folder / "config.json", raw)
        state, seen = {}, set()
        for key, value in self.model.state_dict().items():
            value = value.detach().cpu().contiguous()
            if value.data_ptr() in seen:  # tied weights: safetensors stores each tensor once
                value = value.clone()
            seen.add(value.data_ptr())
            state["model." + key] = value
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
        self.tokenizer.save_pretrained(folder)

    @property
    def options(self) -> dict[str, Any]:
        return GLiClassOptions(max_length=self.max_length, **self.init_options).to_dict()

    # ------------------------------------------------------------------ fine-tuning (udtc.finetune)
    def trainable_module(self) -> torch.nn.Module:
        return self.model

    def training_logits(self, texts: list[str], labels: list[str], *, multi_label: bool) -> torch.Tensor:
        """The logits of :meth:`score` with autograd. In train mode the labels are written in a new random
        order per call (label shuffling, torch's global RNG), so the model cannot learn label positions; the
        columns come back in the caller's order. In eval mode: the canonical order."""
        order = torch.randperm(len(labels)).tolist() if self.model.training else None
        parts, written = [], []
        for inputs, columns, _ in self.build_inputs(texts, labels, label_order=order):
            parts.append(self.model(inputs))  # (B, chunk)  Eq. (9)-(12)
            written += columns
        logits = torch.cat(parts, dim=1)  # (B, L), labels in written order
        return logits[:, torch.tensor(written, device=logits.device).argsort()]  # (B, L), caller's order

    def _to(self, dtype: torch.dtype) -> GLiClassBackend:
        self.model.to(dtype)
        return self

    # ------------------------------------------------------------------ inputs
    def build_inputs(self, texts: list[str], labels: list[str], *, examples: list[dict[str, Any]] | None = None,
                     prompt: str | None = None, label_order: list[int] | None = None
                     ) -> list[tuple[Inputs, list[int], list[bool]]]:
        """The forward passes that score ``texts`` against ``labels``: one per label chunk.

        Returns ``(inputs, columns, truncated)`` triples: ``model(inputs)`` gives logits (B, len(columns))
        for the caller's labels ``columns``; ``truncated[i]`` says whether text i was cut in that pass.
        ``label_order`` (a permutation of ``range(len(labels))``) writes the labels in that order instead
        of the canonical one (sorted); training uses it to shuffle the labels.
        """
        tail, prompt = self._tail(examples, prompt)
        chunks = self._plan(tuple(labels), len(tail), None if label_order is None else tuple(label_order))
        segments = [prompt + t for t in texts] if self.config.prompt_first and prompt else texts
        capped, cut = cap_chars(segments, self.max_length)
        text_ids = self._encode(capped)
        device, result = self.device, []
        for chunk in chunks:
            rows, block_starts = [], []
            for ids in text_ids:
                ids = ids[: chunk.text_budget]
                if self.config.prompt_first:
                    block_starts.append(len(self.prefix))
                    rows.append(self.prefix + chunk.block + ids + tail + self.suffix)
                else:
                    block_starts.append(len(self.prefix) + len(ids))
                    rows.append(self.prefix + ids + chunk.block + tail + self.suffix)
            lengths = [len(r) for r in rows]
            width = max(lengths)
            input_ids = torch.tensor([r + [self.pad_id] * (width - len(r)) for r in rows])  # (B, T)
            n = torch.tensor(lengths)  # (B,)
            attention_mask = (torch.arange(width)[None, :] < n[:, None]).long()  # (B, T)
            starts = torch.tensor(block_starts)  # (B,)
            class_positions = starts[:, None] + torch.tensor(chunk.class_offsets)[None, :]  # (B, K)
            sep_positions = starts + len(chunk.block) - 1  # (B,)
            inputs = Inputs(input_ids, attention_mask, class_positions, sep_positions, n)
            truncated = [c or len(ids) > chunk.text_budget for c, ids in zip(cut, text_ids)]
            result.append((Inputs(*(t.to(device) for t in inputs)), chunk.columns, truncated))
        return result

    def _encode(self, segments: list[str]) -> list[list[int]]:
        """Token ids of user strings as plain text: no special tokens are added or recognised."""
        if not segments:
            return []
        return self.tokenizer(segments, add_special_tokens=False, split_special_tokens=True, verbose=False,
                              return_attention_mask=False, return_token_type_ids=False)["input_ids"]

    def _label_ids(self, labels: list[str]) -> list[list[int]]:
        return self._label_cache.lookup(labels, self._encode)

    def _tail(self, examples: Any, prompt: Any) -> tuple[list[int], str]:
        """Token ids that follow the label block (prompt when it is not first, then examples), and the prompt."""
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string (shared) or a list of strings (one per text), got {type(prompt).__name__}")
        key = (repr(examples), prompt)
        if self._tail_memo[0] == key:  # the Classifier calls score once per batch with the same context
            return self._tail_memo[1]
        self._tail_memo = (key, self._make_tail(examples, prompt or ""))
        return self._tail_memo[1]

    def _make_tail(self, examples: Any, prompt: str) -> tuple[list[int], str]:
        tail = self._encode([prompt])[0] if prompt and not self.config.prompt_first else []
        examples = _check_examples(examples) if examples is not None else []
        if examples:
            if self.example_id is None:
                raise ValueError(f"this model's tokenizer has no {EXAMPLE_TOKEN} token (id "
                                 f"{self.config.example_token_index} in its config), so it cannot take examples")
            segments = [_example_text(e, i) for i, e in enumerate(examples)]
            for ids in self._encode(segments):
                tail += [self.example_id, *ids]
            tail.append(self.sep_id)
        return tail, prompt

    def _plan(self, labels: tuple[str, ...], tail_length: int, order: tuple[int, ...] | None = None) -> list[_Chunk]:
        """Canonical order (sorted labels, unless ``order`` is given) and the chunks that keep each pass within
        max_length."""
        return self._plan_cache.get((labels, tail_length, order), lambda: self._new_plan(labels, tail_length, order))

    def _new_plan(self, labels: tuple[str, ...], tail_length: int, order: tuple[int, ...] | None) -> list[_Chunk]:
        if order is None:
            order = tuple(sorted(range(len(labels)), key=labels.__getitem__))
        elif sorted(order) != list(range(len(labels))):
            raise ValueError(f"label_order must be a permutation of range({len(labels)}), got {list(order)}")
        ids = self._label_ids([labels[i] for i in order])
        sizes = [1 + len(x) for x in ids]  # <<LABEL>> + label tokens
        fixed = len(self.prefix) + len(self.suffix) + 1 + tail_length  # + the <<SEP>> closing the block
        room = self.max_length - fixed - min(_MIN_TEXT_TOKENS, self.max_length // 4)
        if room <= 0:
            raise ValueError(f"the prompt and examples take {tail_length} tokens, leaving no room for labels and text "
                             f"in max_length={self.max_length}; shorten them")
        longest = max(range(len(sizes)), key=sizes.__getitem__)
        if sizes[longest] > room:
            raise ValueError(f"label {labels[order[longest]]!r} is {sizes[longest] - 1} tokens; with max_length="
                             f"{self.max_length} a label may take at most {room - 1}; shorten it")
        chunks = []
        for group in pack(sizes, room):
            block: list[int] = []
            offsets: list[int] = []
            for j in group:
                offsets.append(len(block))
                block += [self.label_id, *ids[j]]
            block.append(self.sep_id)
            chunks.append(_Chunk([order[j] for j in group], block, offsets, self.max_length - fixed + 1 - len(block)))
        return chunks


# ---------------------------------------------------------------------- helpers
def _check_examples(examples: Any) -> list[dict]:
    if isinstance(examples, dict) or not isinstance(examples, (list, tuple)):
        raise TypeError("examples must be a list of {'text': ..., 'labels': [...]} dicts shared by every text, "
                        f"got {type(examples).__name__}")
    return [e for e in examples if e is not None]


def _example_text(example: Any, i: int) -> str:
    """gliclass's few-shot format: ``<<EXAMPLE>>{text} \\nLabels:\\n {label, label}`` (the token is added by the caller)."""
    if not isinstance(example, dict) or not isinstance(example.get("text"), str):
        raise TypeError(f"example {i} must be a dict with a 'text' string and 'labels', got {example!r}")
    labels = example.get("labels", example.get("true_labels", []))
    if isinstance(labels, (list, tuple)):
        if not all(isinstance(x, str) for x in labels):
            raise TypeError(f"example {i}: labels must be strings, got {labels!r}")
        labels = ", ".join(labels)
    return f"{example['text']} \nLabels:\n {labels}"


def _markers_special(tokenizer: Any) -> None:
    """Make the structural markers special tokens, ids unchanged: a checkpoint whose markers are plain added
    tokens (``tokenizer.add_tokens([...])``) would let a label or text write ``<<LABEL>>`` or ``<<SEP>>``, since
    ``split_special_tokens=True`` keeps only special tokens as plain text."""
    from transformers import AddedToken

    markers = [t for t in (LABEL_TOKEN, SEP_TOKEN, EXAMPLE_TOKEN) if token_id(tokenizer, t) is not None]
    plain = [t for t in markers if t not in tokenizer.all_special_tokens]
    if plain:
        ids = [token_id(tokenizer, t) for t in plain]
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in plain], special_tokens=True)
        if [token_id(tokenizer, t) for t in plain] != ids:
            raise ValueError(f"the tokenizer cannot mark {plain} as special tokens with their ids {ids}")


def _position_limit(encoder: torch.nn.Module) -> int | None:
    """Longest input an encoder with absolute position embeddings reads; None for relative/rotary ones."""
    table = getattr(getattr(encoder, "embeddings", None), "position_embeddings", None)
    if not isinstance(table, torch.nn.Embedding):
        return None
    return table.num_embeddings - (table.padding_idx + 1 if table.padding_idx is not None else 0)
