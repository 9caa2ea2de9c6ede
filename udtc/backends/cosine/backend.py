"""Cosine similarity of sentence embeddings (Maheshwari & Raina, "Soft Contextualized Encoder for
User Defined Text Classification", App. E; `shared/papers/sce-soft-contextualized-encoder.txt`).

Text and each label are embedded independently by the same encoder; the compatibility score
is their cosine similarity and the probabilities a softmax over the label set:

    s(x, y) = cos(f(x), f(y))                      # App. E, Eq. (1)
    p(y | x) = softmax_y(scale * s(x, y))          # App. E, Eq. (2); scale=1 is the paper's form

``scale`` (default 20, the temperature sentence-transformers models are trained with) only
sharpens the distribution; the argmax is the paper's. Multi-label: ``sigmoid(scale * (s - shift))``
(uncalibrated: a label is on at threshold 0.5 when its cosine reaches ``shift``).

Reads any sentence-transformers folder (Transformer -> Pooling [cls|mean|max|mean_sqrt_len|
weightedmean|lasttoken] -> optional Dense -> optional Normalize) or a plain encoder (mean pooling).
Label embeddings are cached, so a repeated label set costs nothing. Label-set invariant by
construction: each label is scored on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from udtc.backends._text import LabelCache, encode
from udtc.backends.base import Backend, Scores, Trainable, check_max_length, label_index
from udtc.backends.cosine.config import CosineOptions
from udtc.config import read_json, write_json
from udtc.safety import inside

_ST = "sentence_transformers.models."
#: sentence-transformers' Pooling keys, in the order it concatenates the modes (cls, max, mean, ...): a Dense
#: layer after the pooling was trained on that order
_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max", "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len", "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
#: the names sentence-transformers >= 5 writes as ``pooling_mode`` (a string, or a list concatenated in its order)
_POOLING_NAMES = {"cls": "cls", "cls_token": "cls", "max": "max", "max_tokens": "max", "mean": "mean",
                  "mean_tokens": "mean", "mean_sqrt_len_tokens": "mean_sqrt_len", "weightedmean": "weightedmean",
                  "weightedmean_tokens": "weightedmean", "lasttoken": "lasttoken"}
_ST_NAMES = {"mean_sqrt_len": "mean_sqrt_len_tokens"}  # udtc's mode names that sentence-transformers spells otherwise
_ACTIVATIONS = {"torch.nn.modules.linear.Identity": torch.nn.Identity, "torch.nn.modules.activation.Tanh": torch.nn.Tanh,
                "torch.nn.modules.activation.ReLU": torch.nn.ReLU, "torch.nn.modules.activation.GELU": torch.nn.GELU}
_CACHE_SIZE = 65536
_CITATION = """@inproceedings{reimers2019sentencebert,
  title = {Sentence-{BERT}: Sentence Embeddings using {Siamese} {BERT}-Networks},
  author = {Reimers, Nils and Gurevych, Iryna},
  booktitle = {Proceedings of EMNLP-IJCNLP},
  year = {2019},
}"""


class CosineBackend(Trainable, Backend):
    name: ClassVar[str] = "cosine"
    options_class: ClassVar[type[CosineOptions]] = CosineOptions
    onnx_modules: ClassVar[tuple[str, ...]] = ("model",)  # the transformer encoder

    def __init__(self, model, tokenizer, *, pooling: list[str], dense: list[dict], normalize: bool, max_length: int,
                 do_lower_case: bool = False, scale: float = 20.0, multi_label_shift: float = 0.22,
                 text_prefix: str = "", label_prefix: str = ""):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.pooling, self.dense, self.normalize = pooling, dense, normalize
        self.max_length, self.do_lower_case = max_length, do_lower_case
        self.scale, self.multi_label_shift = float(scale), float(multi_label_shift)
        self.text_prefix, self.label_prefix = text_prefix, label_prefix
        dtype = next(model.parameters()).dtype  # the Dense layers run in the encoder's dtype (e.g. bfloat16)
        self._dense_layers = [_dense_layer(d).to(self.device, dtype) for d in dense]
        self._label_cache: LabelCache[torch.Tensor] = LabelCache(_CACHE_SIZE)

    # ------------------------------------------------------------------ contract
    @classmethod
    def detect(cls, folder: Path) -> bool:
        return folder.is_dir() and ((folder / "modules.json").exists() or _is_plain_encoder(folder))

    @classmethod
    def load(cls, folder: Path, *, device: torch.device, dtype: torch.dtype | None = None,
             trust_remote_code: bool = False, **options: Any) -> CosineBackend:
        from transformers import AutoModel, AutoTokenizer

        opts = cls.parse_options(options)
        if not folder.is_dir():
            raise ValueError(f"the cosine backend loads a folder, got the file {folder}")
        modules = _read_modules(folder)
        transformer_dir = modules["transformer_dir"]
        st_config = read_json(transformer_dir / "sentence_bert_config.json", {})
        kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "use_safetensors": True}
        model = AutoModel.from_pretrained(transformer_dir, dtype=dtype or torch.float32, **kwargs).to(device)
        tokenizer = AutoTokenizer.from_pretrained(transformer_dir, trust_remote_code=trust_remote_code)
        check_max_length(st_config.get("max_seq_length"), f"{transformer_dir / 'sentence_bert_config.json'}: max_seq_length")
        max_length = opts.max_length or st_config.get("max_seq_length") or min(
            getattr(model.config, "max_position_embeddings", 512), tokenizer.model_max_length)
        return cls(model, tokenizer, pooling=modules["pooling"], dense=modules["dense"], normalize=modules["normalize"],
                   max_length=int(max_length), do_lower_case=bool(st_config.get("do_lower_case", False)),
                   **opts.to_dict())

    def score(self, texts: list[str], labels: list[str], *, multi_label: bool, batch_size: int, **kwargs: Any) -> Scores:
        return self.score_each(texts, [labels] * len(texts), multi_label=multi_label, batch_size=batch_size)

    mixed_label_sets: ClassVar[bool] = True  # f(x) does not depend on the labels: one pass over a batch's texts

    def score_each(self, texts: list[str], label_sets: list[list[str]], *, multi_label: bool, batch_size: int,
                   **kwargs: Any) -> Scores:
        text_emb, truncated = self.embed([self.text_prefix + t for t in texts], batch_size)  # (N, D)
        distinct = list(dict.fromkeys(x for labels in label_sets for x in labels))
        label_emb = self.label_embeddings(distinct, batch_size)  # (M, D), each distinct label once
        cos = F.normalize(text_emb, dim=-1) @ F.normalize(label_emb, dim=-1).T  # (N, M)  App. E, Eq. (1)
        index, pad = label_index(distinct, label_sets)  # (N, L), (N, L)
        cos = cos.gather(1, index)  # (N, L): each text against its own label set
        logits = self.scale * (cos - self.multi_label_shift) if multi_label else self.scale * cos  # Eq. (2)
        return Scores(logits.masked_fill(pad, float("-inf")), truncated)

    def save(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        modules = [{"idx": 0, "name": "0", "path": "", "type": _ST + "Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": _ST + "Pooling"}]
        dim = self.model.config.hidden_size
        legacy = [name for name in _POOLING_KEYS.values() if name in self.pooling]  # the order those keys imply
        pool_cfg = ({"word_embedding_dimension": dim, **{k: v in self.pooling for k, v in _POOLING_KEYS.items()}}
                    if legacy == self.pooling else  # else a list read from sentence-transformers >= 5 keeps its order
                    {"word_embedding_dimension": dim, "pooling_mode": [_ST_NAMES.get(m, m) for m in self.pooling]})
        write_json(folder / "1_Pooling" / "config.json", pool_cfg)
        from safetensors.torch import save_file

        for i, (spec, layer) in enumerate(zip(self.dense, self._dense_layers), start=2):
            path = f"{i}_Dense"
            modules.append({"idx": i, "name": str(i), "path": path, "type": _ST + "Dense"})
            write_json(folder / path / "config.json", {k: spec[k] for k in ("in_features", "out_features", "bias", "activation_function")})
            save_file({f"linear.{k}": v.detach().cpu().contiguous() for k, v in layer[0].state_dict().items()},  # ST's names
                      folder / path / "model.safetensors")
        if self.normalize:
            n = len(modules)
            modules.append({"idx": n, "name": str(n), "path": f"{n}_Normalize", "type": _ST + "Normalize"})
            (folder / f"{n}_Normalize").mkdir()
        write_json(folder / "modules.json", modules)
        write_json(folder / "sentence_bert_config.json", {"max_seq_length": self.max_length, "do_lower_case": self.do_lower_case})

    # ------------------------------------------------------------------ embedding
    def label_embeddings(self, labels: list[str], batch_size: int = 32) -> torch.Tensor:
        """Embeddings of ``labels`` (L, D), computed once per distinct label string and cached."""
        embed = lambda missing: self.embed([self.label_prefix + x for x in missing], batch_size)[0]
        return torch.stack(self._label_cache.lookup(labels, embed))

    def embed(self, texts: list[str], batch_size: int = 32) -> tuple[torch.Tensor, list[bool]]:
        """Sentence embeddings (N, D) exactly as sentence-transformers' ``encode`` computes them."""
        out, truncated = [], []
        for start in range(0, len(texts), batch_size):
            with torch.inference_mode():
                emb, cut = self._embed_batch(texts[start : start + batch_size])
            out.append(emb.float().cpu())
            truncated += cut
        return torch.cat(out), truncated

    def _embed_batch(self, texts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """One forward pass, on the model's device; differentiable outside ``inference_mode``."""
        if self.do_lower_case:
            texts = [t.lower() for t in texts]
        enc, cut = encode(self.tokenizer, texts, self.max_length)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        hidden = self.model(**enc).last_hidden_state  # (B, T, H)
        emb = _pool(hidden, enc["attention_mask"], self.pooling)  # (B, H * n_modes)
        for layer in self._dense_layers:
            emb = layer(emb)
        if self.normalize:
            emb = F.normalize(emb, p=2, dim=1)
        return emb, cut

    # ------------------------------------------------------------------ fine-tuning (optional contract)
    # End to end over the label set: cross-entropy (or BCE) on the same scaled cosines ``score``
    # returns, so the text and label towers both move. The encoder is what LoRA wraps; Dense
    # layers, if any, stay frozen.
    supported_methods: ClassVar[frozenset[str]] = frozenset({"full", "lora", "sparse"})
    #: benchmarks/few_shot.py (RECIPES): 8 shots per label, chosen before looking at test data
    training_recipes: ClassVar[dict[str, dict[str, float]]] = {"full": {"learning_rate": 5e-5, "epochs": 10},
                                                               "lora": {"learning_rate": 3e-3, "epochs": 10},
                                                               # benchmarks/sparse.py --select-lr (validation split)
                                                               "sparse": {"learning_rate": 3e-3, "epochs": 10}}
    citation: ClassVar[str] = _CITATION

    def trainable_module(self) -> torch.nn.Module:
        return self.model

    def training_logits(self, texts: list[str], labels: list[str], *, multi_label: bool) -> torch.Tensor:
        text_emb, _ = self._embed_batch([self.text_prefix + t for t in texts])  # (B, D)
        label_emb, _ = self._embed_batch([self.label_prefix + x for x in labels])  # (L, D), never cached
        cos = F.normalize(text_emb.float(), dim=-1) @ F.normalize(label_emb.float(), dim=-1).T  # (B, L)  Eq. (1)
        return self.scale * (cos - self.multi_label_shift) if multi_label else self.scale * cos  # Eq. (2)

    def clear_cache(self) -> None:
        self._label_cache.clear()


def _pool(hidden: torch.Tensor, mask: torch.Tensor, modes: list[str]) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[:, 0])
        elif mode == "max":
            parts.append(hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values)
        elif mode in ("mean", "mean_sqrt_len"):
            total, count = (hidden * m).sum(1), m.sum(1).clamp(min=1e-9)  # (B, H), (B, 1)
            parts.append(total / (count if mode == "mean" else count.sqrt()))
        elif mode == "weightedmean":
            w = m * torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype).view(1, -1, 1)
            parts.append((hidden * w).sum(1) / w.sum(1).clamp(min=1e-9))
        elif mode == "lasttoken":  # last non-padding token, for left or right padding
            idx = mask.shape[1] - 1 - mask.flip(1).int().argmax(1)  # (B,)
            parts.append(hidden[torch.arange(hidden.shape[0], device=hidden.device), idx])
    return torch.cat(parts, dim=-1)


def _pooling_modes(cfg: dict[str, Any], path: Path) -> list[str]:
    """A Pooling config's modes in concatenation order: the boolean keys, or ``pooling_mode`` (a name or a list)."""
    modes = [name for key, name in _POOLING_KEYS.items() if cfg.get(key)]
    given = cfg.get("pooling_mode")
    if given and not modes:
        names = [given] if isinstance(given, str) else given
        unknown = [m for m in names if m not in _POOLING_NAMES] if isinstance(names, list) else [names]
        if unknown:
            raise ValueError(f"{path / 'config.json'}: pooling_mode {unknown} is not supported; udtc pools with "
                             f"{sorted(set(_POOLING_NAMES.values()))}")
        modes = [_POOLING_NAMES[m] for m in names]
    return modes or ["mean"]


def _read_modules(folder: Path) -> dict[str, Any]:
    if not (folder / "modules.json").exists():
        return {"transformer": "", "pooling": ["mean"], "dense": [], "normalize": False, "transformer_dir": folder}
    result: dict[str, Any] = {"transformer": None, "pooling": None, "dense": [], "normalize": False}
    for module in read_json(folder / "modules.json"):
        kind, path = module["type"].removeprefix(_ST), inside(folder, module.get("path", ""), "a modules.json path")
        if kind == "Transformer":
            result["transformer"] = module.get("path", "")
        elif kind == "Pooling":
            cfg = read_json(path / "config.json")
            result["pooling"] = _pooling_modes(cfg, path)
        elif kind == "Dense":
            cfg = read_json(path / "config.json")
            if cfg.get("activation_function") not in _ACTIVATIONS:
                raise ValueError(f"not supported yet: Dense activation_function={cfg.get('activation_function')}")
            weights = path / "model.safetensors"
            if not weights.exists():
                raise ValueError(f"{path} has no model.safetensors; udtc loads safetensors only (no pickle). "
                                 "Convert it with sentence-transformers (save with safe_serialization=True)")
            from safetensors.torch import load_file

            result["dense"].append({**cfg, "weights": load_file(weights)})
        elif kind == "Normalize":
            result["normalize"] = True
        else:
            raise ValueError(f"not supported yet: sentence-transformers module type={module['type']} in {folder}")
    if result["transformer"] is None:
        raise ValueError(f"{folder}/modules.json has no Transformer module")
    result["pooling"] = result["pooling"] or ["mean"]
    result["transformer_dir"] = inside(folder, result["transformer"], "the Transformer path in modules.json")
    return result


def _dense_layer(spec: dict) -> torch.nn.Sequential:
    linear = torch.nn.Linear(spec["in_features"], spec["out_features"], bias=spec.get("bias", True))
    weights = {k.removeprefix("linear."): v for k, v in spec["weights"].items()}
    linear.load_state_dict(weights)
    return torch.nn.Sequential(linear, _ACTIVATIONS[spec["activation_function"]]()).eval()


def _is_plain_encoder(folder: Path) -> bool:
    config = read_json(folder / "config.json", {})
    archs = config.get("architectures") or []
    return bool(config.get("model_type")) and not any(a.endswith(("ForCausalLM", "ForSequenceClassification", "LMHeadModel"))
                                                       for a in archs) and any(folder.glob("*.safetensors"))
