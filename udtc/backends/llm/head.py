"""A classification head on a causal LM's last-token state (Yousefiramandi & Cooney, "Fine-Tuning Causal
LLMs for Text Classification: Embedding-Based vs. Instruction-Based Approaches", arXiv 2512.12677,
Approach 1, Sec. 2.1; `shared/papers/llm-classification-embedding-vs-instruction.txt`).

The text, with the end-of-sequence token appended, runs through the LM; the last layer's state of the
last non-padding token, ``h_T`` (it attends to the whole text), is the text's representation:

    z = W h_T + b                   or   z = W_2 act(W_1 h_T + b_1) + b_2     # Sec. 2.1, logits
    p(y | x) = softmax(z)_y,        L = -log p(y* | x)                         # Eq. (1), single-label
    p(y | x) = sigmoid(z_y),        L = BCE(sigmoid(z), y*)                    # Eq. (2), multi-label

Fixed labels live in ``udtc_head.json`` next to ``udtc_head.safetensors``; multi-label heads also keep
one threshold per label (returned logits are shifted by ``logit(threshold)`` so that the Classifier's
default 0.5 applies them). Without a head (label-set mode) each label is embedded the same way and
scored by ``scale * cos(h_T(x), h_T(y))``: label-set invariant, zero-shot, and trainable contrastively
through :meth:`LlmHeadBackend.training_logits`.

Training (Table 1) goes through ``udtc.finetune``: :meth:`LlmHeadBackend.prepare_training` builds a
fresh seeded head over the training labels (``train_head="linear"`` or ``"mlp"``; ``"none"`` keeps
label-set mode and trains it contrastively); ``method="head"`` trains only the head, LoRA (r=8,
alpha=16, dropout 0.05 on q,k,v,o,gate,up,down) trains the adapter and the head in full, QLoRA adds an
NF4 4-bit base (bitsandbytes, CUDA only). A LoRA run saved without merging keeps only the adapter, the
head and the tokenizer and names its base (a folder, a Hub id, a ``.gguf`` file or ``package:`` path).
The stand-alone helpers :func:`with_lora` / :func:`with_qlora` / :func:`make_optimizer` do the same by hand.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from udtc.backends._text import _CHARS_PER_TOKEN, LabelCache, special_ids
from udtc.backends.base import Backend, Scores, Trainable
from udtc.backends.llm.config import LlmHeadOptions
from udtc.backends.llm.prompt import _pad_id
from udtc.config import read_json, write_json
from udtc.runtime import seeded

HEAD_CONFIG, HEAD_WEIGHTS = "udtc_head.json", "udtc_head.safetensors"
HEAD_KINDS = ("linear", "mlp")
#: LoRA targets of the paper (Sec. 2.1): attention q, k, v, o and the feed-forward projections
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
QLORA_ERROR = "QLoRA needs a CUDA GPU and bitsandbytes; use method='lora' on CPU"
TRAIN_HEADS = ("linear", "mlp", "none")
_CACHE_SIZE = 65536


class LastTokenClassifier(nn.Module):
    """The LM backbone plus an optional head: what fine-tuning wraps (``trainable_module``)."""

    def __init__(self, backbone: nn.Module, head: nn.Module | None = None):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.config = backbone.config  # lets peft find the architecture's layer names

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last non-padding token states (B, H), correct for left and right padding."""
        positions = (attention_mask.cumsum(1) - 1).clamp(min=0)  # (B, T) real positions under left padding
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                               use_cache=False).last_hidden_state  # (B, T, H)
        last = attention_mask.shape[1] - 1 - attention_mask.flip(1).argmax(1)  # (B,) index of h_T
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, H)


def build_head(hidden_size: int, n_labels: int, kind: str = "linear", head_hidden: int | None = None) -> nn.Sequential:
    """A linear layer, or two layers with a GELU between (Sec. 2.1), mapping h_T to one logit per label."""
    if kind == "linear":
        return nn.Sequential(OrderedDict(out=nn.Linear(hidden_size, n_labels)))
    if kind == "mlp":
        inner = head_hidden or hidden_size
        return nn.Sequential(OrderedDict(dense=nn.Linear(hidden_size, inner), act=nn.GELU(),
                                         out=nn.Linear(inner, n_labels)))
    raise ValueError(f"not supported yet: head={kind!r} (use one of {list(HEAD_KINDS)})")


class LlmHeadBackend(Trainable, Backend):
    name: ClassVar[str] = "llm-head"
    options_class: ClassVar[type[LlmHeadOptions]] = LlmHeadOptions
    supported_methods: ClassVar[frozenset[str]] = frozenset({"full", "lora", "qlora", "head", "sparse"})
    lora_targets: ClassVar[tuple[str, ...]] = LORA_TARGETS
    lora_defaults: ClassVar[dict[str, float]] = {"lora_r": 8, "lora_alpha": 16.0, "lora_dropout": 0.05}  # Table 1
    #: benchmarks/few_shot.py --model smollm2
    training_recipes: ClassVar[dict[str, dict[str, float]]] = {"lora": {"learning_rate": 1e-3, "epochs": 10},
                                                               "head": {"learning_rate": 1e-2, "epochs": 10}}
    citation: ClassVar[str] = """@article{yousefiramandi2025finetuning,
  title = {Fine-Tuning Causal {LLMs} for Text Classification: Embedding-Based vs. Instruction-Based Approaches},
  author = {Yousefiramandi, Amirhossein and Cooney, Ciaran},
  journal = {arXiv preprint arXiv:2512.12677},
  year = {2025},
}"""

    def __init__(self, backbone, tokenizer, *, head: nn.Module | None = None, head_config: dict | None = None,
                 scale: float = 20.0, multi_label_shift: float = 0.3, append_eos: bool = True, text_prefix: str = "",
                 label_prefix: str = "", max_length: int = 1024, padding_side: str = "right", train_head: str = "linear",
                 head_hidden: int | None = None):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if train_head not in TRAIN_HEADS:
            raise ValueError(f"not supported yet: train_head={train_head!r} (use one of {list(TRAIN_HEADS)})")
        if head_hidden is not None and (not isinstance(head_hidden, int) or isinstance(head_hidden, bool) or head_hidden < 1):
            raise ValueError(f"head_hidden must be a positive integer or None, got {head_hidden!r}")
        self.module = LastTokenClassifier(backbone, head).eval()
        self.tokenizer, self.head_config = tokenizer, head_config
        self.scale, self.multi_label_shift, self.append_eos = float(scale), float(multi_label_shift), bool(append_eos)
        self.text_prefix, self.label_prefix, self.max_length = text_prefix, label_prefix, int(max_length)
        self.padding_side, self.train_head, self.head_hidden = padding_side, train_head, head_hidden
        self._leading = special_ids(tokenizer, strict=False)[0]
        self._label_cache: LabelCache[torch.Tensor] = LabelCache(_CACHE_SIZE)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def head_modules(self) -> tuple[str, ...]:
        """The fixed-label head, when there is one."""
        return ("head",) if self.module.head is not None else ()

    @classmethod
    def training_load_options(cls, method: str) -> dict[str, Any]:
        return {"load_in_4bit": True} if method == "qlora" else {}

    @property
    def labels(self) -> list[str] | None:
        """The head's fixed labels, or None in label-set mode."""
        return list(self.head_config["labels"]) if self.head_config else None

    # ------------------------------------------------------------------ contract
    @classmethod
    def detect(cls, folder: Path) -> bool:
        return folder.is_dir() and (folder / HEAD_CONFIG).exists() and (folder / "config.json").exists()

    @classmethod
    def load(cls, folder: Path, *, device: torch.device, dtype: torch.dtype | None = None,
             trust_remote_code: bool = False, **options: Any) -> LlmHeadBackend:
        from transformers import AutoModel, AutoTokenizer

        from udtc.gguf import gguf_to_folder, is_gguf

        opts = cls.parse_options(options)
        load_in_4bit = opts.load_in_4bit
        if load_in_4bit:
            check_qlora_available()
        if is_gguf(folder):
            folder = gguf_to_folder(folder)
        if not folder.is_dir():
            raise ValueError(f"the llm-head backend loads a model folder or a .gguf file, got {folder}")
        kwargs: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
        if load_in_4bit:  # QLoRA: NF4 weights, bf16 compute, placed on the GPU by bitsandbytes
            kwargs.update(quantization_config=_nf4_config(), device_map={"": device})
        backbone = AutoModel.from_pretrained(folder, dtype=dtype or torch.float32, **kwargs)
        if not load_in_4bit:
            backbone = backbone.to(device)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        head, head_config = _read_head(folder, backbone.config.hidden_size)
        return cls(backbone, tokenizer, head=head, head_config=head_config, **opts.to_dict()).to(device)

    def score(self, texts: list[str], labels: list[str], *, multi_label: bool, batch_size: int, **kwargs: Any) -> Scores:
        states, truncated = self.embed([self.text_prefix + t for t in texts], batch_size)  # (N, H)
        with torch.inference_mode():
            logits = self._logits(states, labels, multi_label, label_states=None if self.head_config else
                                  self.label_states(labels, batch_size))
        return Scores(logits.float().cpu(), truncated)

    def save(self, folder: Path) -> None:
        self.module.backbone.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        write_json(folder / HEAD_CONFIG, self.head_config or {"labels": None})
        if self.module.head is not None:
            from safetensors.torch import save_file

            save_file({k: v.detach().float().cpu().contiguous() for k, v in self.module.head.state_dict().items()},
                      folder / HEAD_WEIGHTS)

    # ------------------------------------------------------------------ fine-tuning hooks
    def prepare_training(self, labels: list[str], *, multi_label: bool, method: str) -> None:
        """Build a fresh ``train_head`` head over the training labels (Approach 1), drawn from the RNG the
        training loop has just seeded; a head with the same labels and task is kept and trained further."""
        if self.train_head == "none":
            if method == "head":
                raise ValueError("method='head' trains a fixed-label head, but train_head='none' asks for label-set "
                                 "mode; use train_head='linear' or 'mlp', or another method")
            if self.head_config:
                raise ValueError(f"this llm-head model has a fixed-label head ({self.labels}); train_head='none' "
                                 "(contrastive label-set training) needs a model without one")
            return
        config = self.head_config
        if config and config["labels"] == list(labels) and config["multi_label"] == multi_label:
            return
        self.add_head(labels, multi_label=multi_label, kind=self.train_head, head_hidden=self.head_hidden, seed=None)

    def save_adapter_files(self, folder: Path) -> None:
        """Next to a LoRA adapter (its ``modules_to_save`` hold the head weights): head config and tokenizer."""
        self.tokenizer.save_pretrained(folder)
        write_json(folder / HEAD_CONFIG, self.head_config or {"labels": None})

    def prepare_adapter(self, folder: Path) -> None:
        """Give the freshly loaded base a head of the saved shape, so peft can load the adapter's head into it."""
        config = _read_head_config(folder)
        if config is not None:
            self.add_head(config["labels"], multi_label=config["multi_label"], kind=config["head"],
                          head_hidden=config["head_hidden"], thresholds=config["thresholds"])

    def trainable_module(self) -> nn.Module:
        return self.module

    def training_logits(self, texts: list[str], labels: list[str], *, multi_label: bool) -> torch.Tensor:
        ids, mask, _ = self.tokenize([self.text_prefix + t for t in texts])
        states = self.module(ids.to(self.device), mask.to(self.device))  # (N, H)
        label_states = None
        if not self.head_config:
            lids, lmask, _ = self.tokenize([self.label_prefix + x for x in labels])
            label_states = self.module(lids.to(self.device), lmask.to(self.device))  # (L, H)
        return self._logits(states, labels, multi_label, label_states)

    def clear_cache(self) -> None:
        self._label_cache.clear()

    def add_head(self, labels: list[str], *, multi_label: bool = False, kind: str = "linear",
                 head_hidden: int | None = None, thresholds: list[float] | None = None, seed: int | None = 0) -> None:
        """Attach a fresh (randomly initialised) head for the fixed ``labels``; train it with Eq. (1)/(2).

        ``seed`` seeds the initialisation; None draws from torch's global RNG (as seeded by ``finetune``).
        """
        if len(set(labels)) != len(labels) or not labels:
            raise ValueError(f"a head needs unique, non-empty labels, got {labels!r}")
        thresholds = thresholds if thresholds is not None else [0.5] * len(labels)
        if len(thresholds) != len(labels) or not all(0.0 < t < 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be one number in (0, 1) per label, got {thresholds!r}")
        with seeded(seed):
            head = build_head(self.module.config.hidden_size, len(labels), kind, head_hidden)
        self.module.head = head.to(self.device)
        self.head_config = {"labels": list(labels), "multi_label": bool(multi_label), "head": kind,
                            "head_hidden": head_hidden, "thresholds": [float(t) for t in thresholds]}
        self.clear_cache()

    # ------------------------------------------------------------------ computing
    def _logits(self, states: torch.Tensor, labels: list[str], multi_label: bool,
                label_states: torch.Tensor | None) -> torch.Tensor:
        if label_states is not None:  # label-set mode
            cos = F.normalize(states.float(), dim=-1) @ F.normalize(label_states.float(), dim=-1).T  # (N, L)
            return self.scale * (cos - self.multi_label_shift) if multi_label else self.scale * cos
        known = self.head_config["labels"]
        missing = [x for x in labels if x not in known]
        if missing:
            raise ValueError(f"this llm-head model has the fixed labels {known}; {missing} are not among them "
                             "(pass a subset of them, or labels=None to use all)")
        cols = torch.tensor([known.index(x) for x in labels], device=states.device)
        z = self.module.head(states.to(next(self.module.head.parameters()).dtype)).float()  # (N, C)
        if self.head_config["multi_label"]:
            if not multi_label:
                return z[:, cols]
            t = torch.tensor(self.head_config["thresholds"], device=z.device)[cols]
            return z[:, cols] - torch.logit(t)  # Eq. (2): sigmoid(z) >= t  <=>  sigmoid(z - logit t) >= 0.5
        if not multi_label:
            return z[:, cols]  # Eq. (1) softmax restricted to the asked labels
        lp = torch.log_softmax(z, dim=-1)[:, cols]  # (N, L): sigmoid of the result is p(y | x)
        return lp - torch.log(-torch.expm1(lp.clamp(max=-1e-7)))

    def label_states(self, labels: list[str], batch_size: int = 32) -> torch.Tensor:
        """h_T of each label (L, H), computed once per distinct label string and cached."""
        embed = lambda missing: self.embed([self.label_prefix + x for x in missing], batch_size)[0]
        return torch.stack(self._label_cache.lookup(labels, embed))

    def embed(self, texts: list[str], batch_size: int = 32) -> tuple[torch.Tensor, list[bool]]:
        """Last-token states h_T (N, H) and whether each text was cut."""
        out, truncated = [], []
        for start in range(0, len(texts), batch_size):
            ids, mask, cut = self.tokenize(texts[start : start + batch_size])
            with torch.inference_mode():
                out.append(self.module(ids.to(self.device), mask.to(self.device)).float())
            truncated += cut
        return torch.cat(out), truncated

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[bool]]:
        """Ids (B, T) and mask (B, T): [BOS] text [EOS], padded on ``padding_side``; special tokens stay text."""
        eos = [self.tokenizer.eos_token_id] if self.append_eos and self.tokenizer.eos_token_id is not None else []
        room = max(1, self.max_length - len(self._leading) - len(eos))
        limit = max(self.max_length * _CHARS_PER_TOKEN, 4096)
        enc = self.tokenizer([t[:limit] for t in texts], add_special_tokens=False, split_special_tokens=True,
                             verbose=False)
        seqs = [self._leading + ids[:room] + eos for ids in enc["input_ids"]]
        cut = [len(t) > limit or len(ids) > room for t, ids in zip(texts, enc["input_ids"])]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), _pad_id(self.tokenizer), dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, T)
        for i, s in enumerate(seqs):
            span = slice(0, len(s)) if self.padding_side == "right" else slice(width - len(s), width)
            ids[i, span], mask[i, span] = torch.tensor(s, dtype=torch.long), 1
        return ids, mask, cut

    def to(self, device: torch.device) -> LlmHeadBackend:
        if not getattr(self.module.backbone, "is_loaded_in_4bit", False):
            self.module.to(device)
        elif self.module.head is not None:  # 4-bit weights stay where bitsandbytes put them; the head follows
            self.module.head.to(next(self.module.backbone.parameters()).device)
        return self


# ---------------------------------------------------------------------- LoRA / QLoRA (Table 1)
def with_lora(backend: LlmHeadBackend, *, r: int = 16, alpha: float = 16, dropout: float = 0.05,
              target_modules: list[str] | tuple[str, ...] | str = LORA_TARGETS, gradient_checkpointing: bool = False):
    """Wrap ``backend.trainable_module()`` in a fresh peft LoRA adapter, in place; returns the ``PeftModel``
    (what ``finetune(method="lora")`` does, through the same :func:`udtc.training.lora.add_lora`).

    The head (if any) trains in full next to the adapter. ``merge_and_unload()`` on the result folds the
    adapter back so the backend scores (and saves) with the merged weights.
    """
    from udtc.training.lora import add_lora, enable_gradient_checkpointing

    if gradient_checkpointing:
        enable_gradient_checkpointing(backend.trainable_module())
    return add_lora(backend, r=r, alpha=alpha, dropout=dropout, target_modules=target_modules)


def with_qlora(folder: Path, *, r: int = 16, alpha: float = 16, dropout: float = 0.05,
               target_modules: list[str] | tuple[str, ...] | str = LORA_TARGETS, gradient_checkpointing: bool = True,
               trust_remote_code: bool = False, **options: Any) -> tuple[LlmHeadBackend, Any]:
    """QLoRA: load ``folder`` with NF4 4-bit weights (bitsandbytes) and add LoRA; (backend, PeftModel).

    Fails at once, before loading anything, on a machine without CUDA or bitsandbytes.
    """
    check_qlora_available()
    from peft import prepare_model_for_kbit_training

    backend = LlmHeadBackend.load(Path(folder), device=torch.device("cuda"), load_in_4bit=True,
                                  trust_remote_code=trust_remote_code, **options)
    prepare_model_for_kbit_training(backend.module.backbone, use_gradient_checkpointing=gradient_checkpointing,
                                    gradient_checkpointing_kwargs={"use_reentrant": False})
    return backend, with_lora(backend, r=r, alpha=alpha, dropout=dropout, target_modules=target_modules)


def make_optimizer(params, *, lr: float = 2e-4, weight_decay: float = 0.0, eight_bit: bool = False):
    """AdamW, or bitsandbytes' 8-bit AdamW (Table 1; CUDA only) when ``eight_bit``."""
    params = [p for p in params if p.requires_grad]
    if eight_bit:
        check_qlora_available()
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def check_qlora_available() -> None:
    """Raise at once unless a CUDA GPU and bitsandbytes are both there."""
    if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeError(QLORA_ERROR)


def _nf4_config():
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def _read_head_config(folder: Path) -> dict | None:
    """The fixed-label head described by ``udtc_head.json`` (defaults filled in), or None in label-set mode."""
    path = folder / HEAD_CONFIG
    config = read_json(path, None)
    if config is None:
        return None
    if not isinstance(config, dict) or "labels" not in config:
        raise ValueError(f"{path} must be a JSON object with a 'labels' key")
    if config["labels"] is None:
        return None
    known = {"labels", "multi_label", "head", "head_hidden", "thresholds"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{path} has unknown keys {unknown}; known keys are {sorted(known)}")
    return {"multi_label": False, "head": "linear", "head_hidden": None, "thresholds": [0.5] * len(config["labels"]),
            **config}


def _read_head(folder: Path, hidden_size: int) -> tuple[nn.Module | None, dict | None]:
    config = _read_head_config(folder)
    if config is None:
        return None, None
    if not (folder / HEAD_WEIGHTS).exists():
        raise ValueError(f"{folder} has {HEAD_CONFIG} with labels but no {HEAD_WEIGHTS} (safetensors only, no pickle)")
    from safetensors.torch import load_file

    labels = config["labels"]
    head = build_head(hidden_size, len(labels), config["head"], config["head_hidden"])
    head.load_state_dict(load_file(folder / HEAD_WEIGHTS))
    return head.eval(), config

