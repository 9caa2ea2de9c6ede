"""The GLiClass uni-encoder as a torch module (Stepanov et al., "GLiClass: Generalist Lightweight Model
for Sequence Classification Tasks", arXiv:2508.07662, Sec. 2.1; `shared/papers/gliclass.txt`).

    H = Encoder(X)                                   # Eq. (9); optionally re-weighted over layers, Eq. (3)-(6)
    C = ExtractClassFeatures(H, <<LABEL>> tokens)    # Eq. (10)
    T = Pooler(H)                                    # Eq. (11)
    logits = Scorer(T, C)                            # Eq. (12): dot product, Eq. (1), or a small MLP, Eq. (2)

Parameter names follow the gliclass checkpoint format (``model.encoder_model.*``, ``model.text_projector.*``,
...) so a state dict moves between the two libraries by adding or removing the ``model.`` prefix.

Where gliclass 0.1.21 lets padding leak into a result (its text pooling ignores the attention mask, so
``avg``/``max``/``last`` change with the longest text of the batch), this module computes what gliclass
computes for the same sequence alone in its batch: batch composition never changes a score.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

#: text pooling strategies of gliclass (``pass`` only feeds the cross-attention scorer, not supported here)
POOLINGS = ("first", "avg", "max", "last", "sum", "rms", "abs_max", "abs_avg")
CLASS_POOLINGS = ("first", "average")
SCORERS = ("simple", "weighted-dot", "mlp")
#: encoders built through ``transformers.AutoModel`` (T5 and decoder backbones need other classes)
ENCODER_TYPES = ("bert", "deberta-v2", "deberta", "modernbert", "roberta", "xlm-roberta", "electra")
_EPS = 1e-8  # gliclass adds it to the norm when normalize_features is on
_MLP_SCORER_HIDDEN = 256  # gliclass builds its MLP scorer with this width whatever the config says
#: the special tokens of the GLiClass input format (added to the encoder's tokenizer)
LABEL_TOKEN, SEP_TOKEN, EXAMPLE_TOKEN = "<<LABEL>>", "<<SEP>>", "<<EXAMPLE>>"


@dataclass
class GLiClassConfig:
    """The fields of a gliclass ``config.json`` that the uni-encoder reads, with gliclass 0.1.21's defaults."""

    encoder_config: dict
    class_token_index: int = -1
    text_token_index: int = -1
    example_token_index: int = -1
    hidden_size: int | None = None
    vocab_size: int | None = None
    projector_hidden_act: str = "gelu"
    pooling_strategy: str = "first"
    class_token_pooling: str = "first"
    scorer_type: str = "simple"
    normalize_features: bool = False
    extract_text_features: bool = False
    prompt_first: bool = False
    embed_class_token: bool = True
    use_lstm: bool = False
    squeeze_layers: bool = False
    layer_wise: bool = False
    encoder_layer_id: int = -1
    logit_scale_init_value: float = 2.6592
    initializer_range: float = 0.03
    dropout: float = 0.1
    architecture_type: str = "uni-encoder"
    use_segment_embeddings: bool = False
    use_calibrator: bool = False
    multimodal: bool = False

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GLiClassConfig:
        known = {f.name for f in fields(cls)} - {"encoder_config"}
        values = {k: v for k, v in raw.items() if k in known and v is not None}
        config = cls(encoder_config=dict(raw.get("encoder_config") or {}), **values)
        config.encoder_config.setdefault("model_type", "deberta-v2")  # gliclass's default backbone
        enc_vocab = config.encoder_config.get("vocab_size")
        config.vocab_size = config.vocab_size or enc_vocab
        config.hidden_size = config.hidden_size or config.encoder_config.get("hidden_size")
        if config.vocab_size is not None:  # -1 means "the first ids after the vocabulary", as in gliclass
            for offset, name in enumerate(("class_token_index", "text_token_index", "example_token_index")):
                if getattr(config, name) == -1:
                    setattr(config, name, config.vocab_size + offset)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ValueError("not supported yet: <field>=<value>")`` for anything this module does not compute."""
        allowed: dict[str, tuple] = {
            "architecture_type": ("uni-encoder",), "scorer_type": SCORERS, "pooling_strategy": POOLINGS,
            "class_token_pooling": CLASS_POOLINGS, "use_segment_embeddings": (False,), "use_calibrator": (False,),
            "multimodal": (False,),
        }
        for name, values in allowed.items():
            if getattr(self, name) not in values:
                raise ValueError(f"not supported yet: {name}={getattr(self, name)!r} (udtc's gliclass backend "
                                 f"supports {name} in {list(values)})")
        model_type = self.encoder_config["model_type"]
        if model_type not in ENCODER_TYPES:
            raise ValueError(f"not supported yet: encoder_config.model_type={model_type!r} "
                             f"(supported encoders: {', '.join(ENCODER_TYPES)})")
        for name in ("hidden_size", "vocab_size"):
            if type(getattr(self, name)) is not int:
                raise ValueError(f"the gliclass config has no usable {name} (got {getattr(self, name)!r})")


class Inputs(NamedTuple):
    """One padded batch as the backend assembles it (right padding)."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    class_positions: torch.Tensor  # (B, K) position of each <<LABEL>> token
    sep_positions: torch.Tensor  # (B,) position of the <<SEP>> that closes the label block
    lengths: torch.Tensor  # (B,) real tokens per row


class Projector(nn.Module):
    """linear_1 -> activation -> dropout -> linear_2, as gliclass's FeaturesProjector."""

    def __init__(self, encoder_hidden: int, hidden: int, act: str, dropout: float):
        from transformers.activations import ACT2FN

        super().__init__()
        self.linear_1 = nn.Linear(encoder_hidden, hidden)
        self.act = ACT2FN[act]
        self.dropout = nn.Dropout(dropout)
        self.linear_2 = nn.Linear(hidden, encoder_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.dropout(self.act(self.linear_1(x))))


class DotScorer(nn.Module):
    def forward(self, text: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return (classes @ text.unsqueeze(-1)).squeeze(-1)  # (B, K)  Eq. (1); 1/tau applied by the caller


class MLPScorer(nn.Module):
    def __init__(self, dim: int, hidden: int = _MLP_SCORER_HIDDEN):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
                                 nn.Linear(hidden // 2, 1))

    def forward(self, text: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        pairs = torch.cat([text.unsqueeze(1).expand_as(classes), classes], dim=-1)  # (B, K, 2D)
        return self.mlp(pairs).squeeze(-1)  # (B, K)  Eq. (2): g([t; c])


class WeightedDotScorer(nn.Module):
    """g([t1; c1; t2 * c2]) with (t1, t2) and (c1, c2) two linear views of text and label."""

    def __init__(self, dim: int, dropout: float = 0.1):
        super().__init__()
        self.proj_text = nn.Linear(dim, 2 * dim)
        self.proj_label = nn.Linear(dim, 2 * dim)
        self.out_mlp = nn.Sequential(nn.Linear(3 * dim, 4 * dim), nn.Dropout(dropout), nn.ReLU(), nn.Linear(4 * dim, 1))

    def forward(self, text: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        B, K, D = classes.shape
        t = self.proj_text(text).view(B, 1, 2, D).expand(B, K, 2, D)  # (B, K, 2, D)
        c = self.proj_label(classes).view(B, K, 2, D)  # (B, K, 2, D)
        return self.out_mlp(torch.cat([t[:, :, 0], c[:, :, 0], t[:, :, 1] * c[:, :, 1]], dim=-1)).squeeze(-1)  # (B, K)


class BiLSTM(nn.Module):
    """Bidirectional LSTM over the text tokens (gliclass's LstmSeq2SeqEncoder, key ``lstm.lstm.*``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim // 2, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=x.shape[1])
        return out  # (B, T, D), zeros after each row's length


class LayerwiseAttention(nn.Module):
    """Squeeze-excitation over the encoder layers, Eq. (3)-(6)."""

    def __init__(self, num_layers: int, dim: int):
        super().__init__()
        self.squeeze = nn.Linear(dim, 1)
        self.W1 = nn.Linear(num_layers, num_layers // 2)
        self.W2 = nn.Linear(num_layers // 2, num_layers)
        self.output_projection = nn.Linear(dim, dim)

    def forward(self, layers: tuple[torch.Tensor, ...], mask: torch.Tensor) -> torch.Tensor:
        U = torch.stack(layers[-self.W1.in_features:], dim=1)  # (B, K, L, D)
        m = mask[:, None, :].to(U.dtype)  # (B, 1, L)
        Z = (self.squeeze(U).squeeze(-1) * m).sum(-1) / m.sum(-1)  # (B, K)  Eq. (3), mean over real tokens
        S = torch.sigmoid(self.W2(F.relu(self.W1(Z))))  # (B, K)  Eq. (4)
        U_tilde = (U * S[:, :, None, None]).sum(1)  # (B, L, D)  Eq. (5)
        return self.output_projection(U_tilde)  # (B, L, D)  Eq. (6)


class GLiClassUniEncoder(nn.Module):
    """Encoder, projectors and scorer of a gliclass uni-encoder; ``forward`` returns raw logits (B, K)."""

    def __init__(self, config: GLiClassConfig, encoder: nn.Module, *, mlp_hidden: int = _MLP_SCORER_HIDDEN,
                 num_squeeze_layers: int | None = None):
        super().__init__()
        self.config = config
        D = encoder.config.hidden_size
        self.encoder_model = encoder
        self.text_projector = Projector(D, config.hidden_size, config.projector_hidden_act, config.dropout)
        self.classes_projector = Projector(D, config.hidden_size, config.projector_hidden_act, config.dropout)
        if config.scorer_type == "simple":
            self.scorer = DotScorer()
        elif config.scorer_type == "mlp":
            self.scorer = MLPScorer(config.hidden_size, mlp_hidden)
        else:
            self.scorer = WeightedDotScorer(config.hidden_size)
        if config.use_lstm:
            self.lstm = BiLSTM(config.hidden_size)
        if config.squeeze_layers:
            self.layer_wise_attention = LayerwiseAttention(num_squeeze_layers or encoder.config.num_hidden_layers, D)
        self.dropout = nn.Dropout(config.dropout)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))

    def forward(self, inputs: Inputs) -> torch.Tensor:
        c = self.config
        need_layers = c.squeeze_layers or c.encoder_layer_id != -1
        out = self.encoder_model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask,
                                 output_hidden_states=need_layers, return_dict=True)
        if c.encoder_layer_id != -1:
            H = out.hidden_states[c.encoder_layer_id]  # (B, T, D)
        elif c.squeeze_layers:
            H = self.layer_wise_attention(out.hidden_states, inputs.attention_mask)  # (B, T, D)  Eq. (3)-(6)
        else:
            H = out.last_hidden_state  # (B, T, D)  Eq. (9)
        classes = self.class_features(H, inputs)  # (B, K, D)  Eq. (10)
        text = self.dropout(self.text_projector(self.text_features(H, inputs)))  # (B, D)  Eq. (11)
        classes = self.classes_projector(classes)  # (B, K, D)
        if c.normalize_features:
            text = text / (text.norm(p=2, dim=-1, keepdim=True) + _EPS)
            classes = classes / (classes.norm(p=2, dim=-1, keepdim=True) + _EPS)
        logits = self.scorer(text, classes)  # (B, K)  Eq. (12)
        if c.normalize_features:
            logits = logits * self.logit_scale  # Eq. (1): the learnt scale plays 1 / tau
        return logits

    # ------------------------------------------------------------------ Eq. (10)
    def class_features(self, H: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        B, T, D = H.shape
        pos = inputs.class_positions  # (B, K)
        K = pos.shape[1]
        if self.config.class_token_pooling == "first":
            if not self.config.embed_class_token:
                pos = pos + 1  # the first token of the label itself
            return H.gather(1, pos.unsqueeze(-1).expand(B, K, D))  # (B, K, D)
        # "average": label k spans from its <<LABEL>> to the next one; the last label runs to the <<SEP>>
        # when text features are extracted, else to the end of the sequence (gliclass's rule).
        arange = torch.arange(T, device=H.device)
        # a tensor source, not a Python scalar: the ONNX exporter's tracer has no scatter_ of a bool value
        hits = torch.zeros(B, T, dtype=torch.long, device=H.device).scatter_(1, pos, torch.ones_like(pos))  # (B, T)
        is_class = hits.bool()  # (B, T) the <<LABEL>> tokens
        span = hits.cumsum(1) - 1  # (B, T) label index of each position, -1 before the first
        end = inputs.sep_positions if self.config.extract_text_features else inputs.lengths  # (B,)
        keep = (span >= 0) & (arange[None, :] < end[:, None])
        if not self.config.embed_class_token:
            keep &= ~is_class
        span = torch.where(keep, span, K)  # (B, T) positions outside every label go to a spare slot K
        Hf = H.float()  # sum in float32 whatever the model's dtype
        sums = Hf.new_zeros(B, K + 1, D).scatter_add_(1, span.unsqueeze(-1).expand(B, T, D), Hf)  # (B, K+1, D)
        counts = Hf.new_zeros(B, K + 1).scatter_add_(1, span, keep.float())  # (B, K+1)
        return (sums[:, :K] / counts[:, :K, None].clamp(min=1)).to(H.dtype)

    # ------------------------------------------------------------------ Eq. (11)
    def text_features(self, H: torch.Tensor, inputs: Inputs) -> torch.Tensor:
        """Pool the text tokens the way gliclass does for this sequence alone in its batch.

        gliclass pools a window of the padded length without a mask: with ``extract_text_features`` the
        window starts at <<SEP>> and ends with as many zero vectors as tokens were skipped; a bidirectional
        LSTM, when present, returns exactly the region's tokens.
        """
        c = self.config
        B, T, D = H.shape
        n = inputs.lengths  # (B,)
        start = inputs.sep_positions if c.extract_text_features else torch.zeros_like(n)  # (B,)
        size = n - start  # (B,) real tokens in the region
        R = H
        if c.extract_text_features:  # left-align the region: R[b, j] = H[b, start_b + j]
            index = (start[:, None] + torch.arange(T, device=H.device)[None, :]).clamp(max=T - 1)  # (B, T)
            R = H.gather(1, index.unsqueeze(-1).expand(B, T, D))  # (B, T, D)
        valid = torch.arange(T, device=H.device)[None, :] < size[:, None]  # (B, T)
        if c.use_lstm:
            R = self.lstm(R, size)
            zeros = torch.zeros_like(n)
        else:
            zeros = start  # zero vectors gliclass appends to the window
        count = (size + zeros).to(H.dtype)[:, None]  # (B, 1) positions gliclass averages over
        vm = valid.unsqueeze(-1)  # (B, T, 1)
        mode = c.pooling_strategy
        if mode == "first":
            return R[:, 0]
        if mode == "last":
            last = R.gather(1, (size - 1).clamp(min=0)[:, None, None].expand(B, 1, D)).squeeze(1)  # (B, D)
            return torch.where((zeros > 0)[:, None], torch.zeros_like(last), last)
        if mode in ("max", "abs_max"):
            x = R.abs() if mode == "abs_max" else R
            top = x.masked_fill(~vm, torch.finfo(x.dtype).min).amax(1)  # (B, D)
            return torch.where((zeros > 0)[:, None], top.clamp(min=0), top)
        x = R.masked_fill(~vm, 0.0)
        if mode == "sum":
            return x.sum(1)
        if mode == "avg":
            return x.sum(1) / count
        if mode == "abs_avg":
            return x.abs().sum(1) / count
        return (x.pow(2).sum(1) / count).sqrt()  # rms


def init_head_weights(module: GLiClassUniEncoder, std: float) -> None:
    """gliclass's initialisation of everything outside the encoder: N(0, std) weights, zero biases."""
    for name, sub in module.named_modules():
        if name.startswith("encoder_model"):
            continue
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, std=std)
            nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LSTM):
            for pname, param in sub.named_parameters():
                if "bias" in pname:
                    nn.init.zeros_(param)
                else:
                    nn.init.normal_(param, std=std)


def build_module(config: GLiClassConfig, state: dict[str, torch.Tensor]) -> GLiClassUniEncoder:
    """The GLiClass module a saved config describes, with the weights in ``state``."""
    from transformers import AutoConfig, AutoModel

    enc = {k: v for k, v in config.encoder_config.items() if k != "model_type"}
    enc["vocab_size"] = config.vocab_size
    encoder_config = AutoConfig.for_model(config.encoder_config["model_type"], **enc)
    kwargs = {}
    if config.encoder_config["model_type"] in ("bert", "roberta", "xlm-roberta") and not any(
            k.startswith("encoder_model.pooler.") for k in state):
        kwargs["add_pooling_layer"] = False
    encoder = AutoModel.from_config(encoder_config, **kwargs)
    mlp = state.get("scorer.mlp.0.weight")
    squeeze = state.get("layer_wise_attention.W1.weight")
    module = GLiClassUniEncoder(config, encoder, **({"mlp_hidden": mlp.shape[0]} if mlp is not None else {}),
                                num_squeeze_layers=squeeze.shape[1] if squeeze is not None else None)
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(f"the gliclass weights do not fit the model its config describes: {err}") from None
    missing = [k for k in missing if not k.startswith("encoder_model.pooler.")]
    unexpected = [k for k in unexpected if "position_embeddings" not in k and "position_ids" not in k]
    if missing or unexpected:
        raise ValueError(f"the gliclass weights do not match its config: missing {missing[:8]}, unexpected {unexpected[:8]}")
    return module
