"""Soft Contextualized Encoder (Maheshwari & Raina, "Soft Contextualized Encoder for User Defined Text
Classification", Sec. 2.2, Eq. 1-3; `shared/papers/sce-soft-contextualized-encoder.txt`).

A frozen external sentence embedder f reads the text once; a small trainable Transformer encoder
reads that embedding as a soft prompt followed by one vector per label, with no positional
information, so the label set is a set:

    q    = f(x)                                   frozen external embedding (any sentence-transformers model)
    q'   = W q + b                                trainable affine map to the encoder width (Sec. 2.2)
    t_i  = mean_k E[tok_k(y_i)]                   Eq. (2): frozen token embeddings of label y_i, mean-pooled
    h_0, h_1..h_L = T([q'; t_1..t_L])             encoder without positional encodings (permutation-equivariant)
    s_i  = a * cos(h_0, h_i)                      Eq. (3), cosine with a learned scale a (see below)
    p(y_i | x) = softmax_i(s_i)                   Eq. (1), (3)

Two departures, both measured (docs/backends/sce.md): Eq. (3)'s raw dot product of the encoder's
final states gave near-uniform logits and did not train, so the score is a cosine times a learned
scale; and by default (``residual=True``) the frozen embedder's own cosine score is added,
``s_i += c * cos(q, f(y_i))``, so that the encoder learns a correction to the cosine baseline
(App. E) that starts at zero. ``label_input="tokens+embedding"`` adds ``W f(y_i) + b`` to ``t_i``.
``label_attention=False`` (an ablation) lets each label attend only to the prompt and itself.

Invariance holds by construction: no position enters the encoder, attention and the per-label
score are permutation-equivariant, and the softmax runs over the set. Multi-label (an extension,
not in the paper): ``sigmoid(s_i - (a + c) * multi_label_shift)``; the labels still see each other.

Saved folder: ``udtc_config.json`` (options name the embedder and the encoder the layers came
from) and ``sce.safetensors`` holding only what was trained (affine map, role vectors, layer norm,
encoder layers, scales); the frozen token embeddings and tokenizer are re-read from ``encoder``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from udtc.backends._text import LabelCache, encode
from udtc.backends.base import Backend, Scores, Trainable, label_index
from udtc.backends.sce.config import LABEL_INPUTS, SCEOptions
from udtc.safety import bundle_local_models, saved_model_names

WEIGHTS_NAME = "sce.safetensors"
_CACHE_SIZE = 65536
_CITATION = """@article{maheshwari2026sce,
  title = {Soft Contextualized Encoder For User Defined Text Classification},
  author = {Maheshwari, Charu and Raina, Vyas},
  year = {2026},
}"""


# ---------------------------------------------------------------------------------------------- model
class EncoderLayer(nn.Module):
    """A post-LayerNorm BERT layer (attention, then feed-forward), positions never enter it."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float):
        super().__init__()
        assert hidden % heads == 0, f"hidden size {hidden} is not divisible by {heads} heads"
        self.heads = heads
        self.query, self.key, self.value = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.attn_out, self.attn_norm = nn.Linear(hidden, hidden), nn.LayerNorm(hidden, eps=eps)
        self.ffn_in, self.ffn_out = nn.Linear(hidden, intermediate), nn.Linear(intermediate, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, T, H = x.shape
        split = lambda t: t.view(B, T, self.heads, H // self.heads).transpose(1, 2)  # (B, heads, T, H/heads)
        att = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)),
                                             attn_mask=allowed[:, None])  # (B, heads, T, H/heads)
        x = self.attn_norm(x + self.attn_out(att.transpose(1, 2).reshape(B, T, H)))  # (B, T, H)
        return self.ffn_norm(x + self.ffn_out(F.gelu(self.ffn_in(x))))

    # names of the same weights in a Hugging Face BertLayer
    HF_NAMES: ClassVar[dict[str, str]] = {
        "query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
        "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
        "ffn_in": "intermediate.dense", "ffn_out": "output.dense", "ffn_norm": "output.LayerNorm",
    }


class SoftContextualizedEncoder(nn.Module):
    """Everything SCE trains: the affine map, role vectors, input norm, encoder layers and scales."""

    def __init__(self, embed_dim: int, hidden: int, heads: int, intermediate: int, num_layers: int, *,
                 eps: float = 1e-12, label_attention: bool = True, residual: bool = True,
                 label_input: str = "tokens"):
        super().__init__()
        self.label_attention, self.residual, self.label_input = label_attention, residual, label_input
        self.adapter = nn.Linear(embed_dim, hidden)  # W q + b (Sec. 2.2)
        self.roles = nn.Parameter(torch.zeros(2, hidden))  # [prompt, label]: one vector each, never a position
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, intermediate, eps) for _ in range(num_layers))
        # logit = sce_scale * cos(h_0, h_i) [+ cos_scale * cos(q, f(y_i))]; the correction starts at zero
        self.sce_scale = nn.Parameter(torch.tensor(0.0 if residual else 20.0))
        self.cos_scale = nn.Parameter(torch.tensor(20.0), requires_grad=residual)

    def forward(self, q: torch.Tensor, label_tokens: torch.Tensor, label_emb: torch.Tensor,
                label_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, L)`` of B texts against their label sets (padded entries get -inf).

        Args:
            q: ``(B, D)`` external text embeddings.
            label_tokens: ``(B, L, H)`` Eq. (2) label vectors (mean of frozen token embeddings).
            label_emb: ``(B, L, D)`` external embeddings of the labels (used by ``residual`` and
                ``label_input="tokens+embedding"``).
            label_mask: ``(B, L)`` True for real labels; None when every label is real.
        """
        B, L, _ = label_tokens.shape
        if label_mask is None:
            label_mask = torch.ones(B, L, dtype=torch.bool, device=q.device)
        prompt = self.adapter(q) + self.roles[0]  # (B, H)  q' = W q + b
        labels = label_tokens + self.roles[1]  # (B, L, H)  Eq. (2)
        if self.label_input == "tokens+embedding":
            labels = labels + self.adapter(label_emb)
        x = self.norm(torch.cat([prompt[:, None], labels], dim=1))  # (B, 1 + L, H), no positions
        for layer in self.layers:
            x = layer(x, self._allowed(label_mask))
        h0, hl = x[:, :1], x[:, 1:]  # (B, 1, H), (B, L, H)
        logits = self.sce_scale * F.cosine_similarity(h0, hl, dim=-1)  # (B, L)  Eq. (3)
        if self.residual:
            logits = logits + self.cos_scale * F.cosine_similarity(q[:, None], label_emb, dim=-1)  # App. E
        return logits.masked_fill(~label_mask, float("-inf"))

    def _allowed(self, label_mask: torch.Tensor) -> torch.Tensor:
        """``(B, 1 + L, 1 + L)`` boolean attention mask: who may attend to whom."""
        B, L = label_mask.shape
        keys = torch.cat([label_mask.new_ones(B, 1), label_mask], dim=1)  # (B, 1 + L)
        allowed = keys[:, None, :].expand(B, L + 1, L + 1)
        if not self.label_attention:  # ablation: a label sees only the prompt and itself, the prompt only itself
            eye = torch.eye(L + 1, dtype=torch.bool, device=label_mask.device)
            first = torch.zeros(L + 1, L + 1, dtype=torch.bool, device=label_mask.device)
            first[1:, 0] = True
            allowed = allowed & (eye | first)
        return allowed

    def multi_label_offset(self) -> torch.Tensor:
        return self.sce_scale + self.cos_scale if self.residual else self.sce_scale

    def copy_encoder_layers(self, bert: nn.Module, layers: list[int] | None = None) -> None:
        """Initialise from a pretrained BERT-style encoder: its first layers and embedding LayerNorm."""
        state = bert.state_dict()
        prefix = "encoder.layer." if any(k.startswith("encoder.layer.") for k in state) else "layer."
        for mine, theirs in zip(self.layers, layers or range(len(self.layers))):
            mine.load_state_dict({f"{name}.{p}": state[f"{prefix}{theirs}.{hf}.{p}"]
                                  for name, hf in EncoderLayer.HF_NAMES.items() for p in ("weight", "bias")})
        self.norm.load_state_dict({p: state[f"embeddings.LayerNorm.{p}"] for p in ("weight", "bias")})
        with torch.no_grad():  # a constant stand-in for the type and position embeddings BERT layers expect
            role = state["embeddings.token_type_embeddings.weight"][0]
            if "embeddings.position_embeddings.weight" in state:
                role = role + state["embeddings.position_embeddings.weight"][1:17].mean(0)
            self.roles.copy_(role.expand_as(self.roles))


# ---------------------------------------------------------------------------------------------- backend
class SCEBackend(Trainable, Backend):
    name: ClassVar[str] = "sce"
    options_class: ClassVar[type[SCEOptions]] = SCEOptions
    citation: ClassVar[str] = _CITATION
    supported_methods: ClassVar[frozenset[str]] = frozenset({"full", "sparse"})
    #: the frozen embedder's transformer; the SCE encoder (2 layers over 1 + L vectors) stays in torch
    onnx_modules: ClassVar[tuple[str, ...]] = ("embedder.model",)

    def __init__(self, embedder: Any, word_embeddings: torch.Tensor, tokenizer: Any, model: SoftContextualizedEncoder,
                 *, embedder_name: str, encoder_name: str, layers: list[int], max_label_tokens: int = 16,
                 multi_label_shift: float = -0.03):
        self.embedder = embedder  # a CosineBackend: the frozen external sentence embedder f
        self.word_embeddings = word_embeddings.detach().float()  # (V, H) frozen token embeddings E
        self.tokenizer, self.model = tokenizer, model.eval()
        self.embedder_name, self.encoder_name, self.layers = embedder_name, encoder_name, list(layers)
        self.max_label_tokens, self.multi_label_shift = int(max_label_tokens), float(multi_label_shift)
        self._token_cache: LabelCache[torch.Tensor] = LabelCache(_CACHE_SIZE)
        self._text_cache: dict[str, torch.Tensor] = {}  # training only: q of each training text (App. R/S)

    # ------------------------------------------------------------------ contract
    @classmethod
    def detect(cls, folder: Path) -> bool:
        return folder.is_dir() and (folder / WEIGHTS_NAME).exists()

    @classmethod
    def load(cls, folder: Path, *, device: torch.device, dtype: torch.dtype | None = None,
             trust_remote_code: bool = False, **options: Any) -> SCEBackend:
        from safetensors.torch import load_file

        cls.parse_options(options)
        if "embedder" not in options:
            raise ValueError(f"{folder}: the sce backend needs the option 'embedder' (a sentence-transformers model)")
        weights = folder / WEIGHTS_NAME
        if not weights.exists():
            raise FileNotFoundError(f"missing {weights}")
        arch = {k: options.pop(k) for k in ("label_attention", "residual", "label_input") if k in options}
        if arch.get("label_input", "tokens") not in LABEL_INPUTS:
            raise ValueError(f"not supported yet: label_input={arch['label_input']}")
        state = load_file(weights)
        n_layers = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("layers.")), default=-1)
        layers = options.pop("layers", list(range(n_layers)))
        if len(layers) != n_layers:
            raise ValueError(f"{weights} holds {n_layers} encoder layers but the option layers={layers}")
        return cls.build(options.pop("embedder"), options.pop("encoder", None), layers, device=device, dtype=dtype,
                         trust_remote_code=trust_remote_code, state=state, **arch, **options)

    @classmethod
    def build(cls, embedder: str, encoder: str | None, layers: list[int], *, device: torch.device,
              dtype: torch.dtype | None = None, trust_remote_code: bool = False,
              state: dict[str, torch.Tensor] | None = None, label_attention: bool = True, residual: bool = True,
              label_input: str = "tokens", **options: Any) -> SCEBackend:
        """A new SCE: pretrained layers ``layers`` of ``encoder`` (default: the embedder's own
        transformer), or the trained weights in ``state``."""
        from udtc.backends.cosine.backend import CosineBackend
        from udtc.hub import resolve

        f = CosineBackend.load(resolve(embedder, trust_remote_code=trust_remote_code), device=device, dtype=dtype,
                               trust_remote_code=trust_remote_code)
        encoder = encoder or embedder
        if encoder == embedder:
            bert, tokenizer = f.model, f.tokenizer
        else:
            from transformers import AutoModel, AutoTokenizer

            from udtc.backends.cosine.backend import _read_modules

            path = resolve(encoder, trust_remote_code=trust_remote_code)
            path = _read_modules(path)["transformer_dir"]
            bert = AutoModel.from_pretrained(path, use_safetensors=True, trust_remote_code=trust_remote_code)
            tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        cfg = bert.config
        if cfg.model_type not in ("bert",):
            raise ValueError(f"not supported yet: encoder model_type={cfg.model_type}")
        if getattr(cfg, "hidden_act", "gelu") != "gelu":
            raise ValueError(f"not supported yet: encoder hidden_act={cfg.hidden_act}")
        embed_dim = f.embed(["a"])[0].shape[-1]
        model = SoftContextualizedEncoder(embed_dim, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size,
                                          len(layers), eps=cfg.layer_norm_eps, label_attention=label_attention,
                                          residual=residual, label_input=label_input)
        if state is None:
            model.copy_encoder_layers(bert, layers)
        else:
            model.load_state_dict(state)
        words = bert.get_input_embeddings().weight
        return cls(f, words, tokenizer, model.to(device), embedder_name=embedder, encoder_name=encoder,
                   layers=layers, **options)

    def score(self, texts: list[str], labels: list[str], *, multi_label: bool, batch_size: int, **kwargs: Any) -> Scores:
        return self.score_each(texts, [labels] * len(texts), multi_label=multi_label, batch_size=batch_size)

    mixed_label_sets: ClassVar[bool] = True  # q = f(x) does not depend on the labels; the encoder reads each set

    def score_each(self, texts: list[str], label_sets: list[list[str]], *, multi_label: bool, batch_size: int,
                   **kwargs: Any) -> Scores:
        q, truncated = self.embedder.embed(texts, batch_size)  # (N, D), each text embedded once
        distinct = list(dict.fromkeys(x for labels in label_sets for x in labels))
        tokens = self.label_vectors(distinct)  # (M, H)  Eq. (2)
        label_emb = self.embedder.label_embeddings(distinct, batch_size).to(self.device)  # (M, D)
        index, pad = (t.to(self.device) for t in label_index(distinct, label_sets))  # (N, L), (N, L)
        with torch.inference_mode():  # the Classifier hands over at most batch_size texts: one pass
            logits = self._logits(q.to(self.device), tokens[index], label_emb[index], multi_label, ~pad)  # (N, L)  Eq. (3)
        return Scores(logits.float().cpu(), truncated)

    def _logits(self, q, tokens, label_emb, multi_label: bool, label_mask=None) -> torch.Tensor:
        logits = self.model(q, tokens, label_emb, label_mask)  # (b, L)  Eq. (3)
        return logits - self.model.multi_label_offset() * self.multi_label_shift if multi_label else logits

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().float().cpu().contiguous() for k, v in self.model.state_dict().items()},
                  folder / WEIGHTS_NAME)
        bundle_local_models(folder, self.embedder_name, self.encoder_name)

    @property
    def options(self) -> dict[str, Any]:  # the names differ from the attributes (``embedder`` is the model)
        embedder, encoder = saved_model_names(self.embedder_name, self.encoder_name)
        return SCEOptions(embedder=embedder, encoder=encoder, layers=self.layers,
                          label_attention=self.model.label_attention, residual=self.model.residual,
                          label_input=self.model.label_input, max_label_tokens=self.max_label_tokens,
                          multi_label_shift=self.multi_label_shift).to_dict()

    # ------------------------------------------------------------------ labels
    def label_vectors(self, labels: list[str]) -> torch.Tensor:
        """Eq. (2): the mean frozen token embedding of each label, ``(L, H)``, cached per string."""
        return torch.stack(self._token_cache.lookup(labels, self._mean_token_embeddings)).to(self.device)

    def _mean_token_embeddings(self, labels: list[str]) -> torch.Tensor:
        enc, _ = encode(self.tokenizer, labels, self.max_label_tokens + 2)
        ids, mask = enc["input_ids"], enc["attention_mask"].bool()  # (M, T)
        # user text can never produce a special token (split_special_tokens), so these are [CLS]/[SEP]/[PAD]
        mask &= ~torch.isin(ids, torch.tensor(self.tokenizer.all_special_ids))
        vectors = self.word_embeddings[ids] * mask[..., None]  # (M, T, H)
        return vectors.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)  # (M, H)  Eq. (2)

    # ------------------------------------------------------------------ fine-tuning (optional contract)
    def trainable_module(self) -> torch.nn.Module:
        return self.model

    def training_logits(self, texts: list[str], labels: list[str], *, multi_label: bool) -> torch.Tensor:
        # the external embedder is frozen (Sec. 2.2): each training text is embedded once, in its first
        # epoch, and reused after (App. R/S); clear_cache() (before and after training) empties it
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        with torch.no_grad():
            if missing:
                self._text_cache.update(zip(missing, self.embedder.embed(missing, len(missing))[0]))
            label_emb = self.embedder.label_embeddings(labels)
        q = torch.stack([self._text_cache[t] for t in texts])  # (B, D)
        b = len(texts)
        return self._logits(q.to(self.device), self.label_vectors(labels).expand(b, -1, -1),
                            label_emb.to(self.device).expand(b, -1, -1), multi_label)

    def clear_cache(self) -> None:
        self.embedder.clear_cache()
        self._text_cache.clear()
