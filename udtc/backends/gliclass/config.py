"""Options of the gliclass backend (what ``udtc_config.json`` stores under ``options``).

Besides ``max_length``, the options describe how a new model is built on a plain encoder
(``init_seed`` and gliclass config fields); they are saved only when the model was built that way
with a seed, so that ``load`` rebuilds the same untrained model (e.g. the base of a LoRA adapter).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from udtc.backends.base import Options


@dataclass
class GLiClassOptions(Options):
    max_length: int | None = None  # tokens per forward pass; the encoder's limit (at most 1024) when None
    init_seed: int | None = None  # seed of a new model's weights
    pooling_strategy: str | None = None
    class_token_pooling: str | None = None
    scorer_type: str | None = None
    normalize_features: bool | None = None
    extract_text_features: bool | None = None
    prompt_first: bool | None = None
    embed_class_token: bool | None = None
    use_lstm: bool | None = None
    squeeze_layers: bool | None = None
    layer_wise: bool | None = None
    encoder_layer_id: int | None = None
    hidden_size: int | None = None
    projector_hidden_act: str | None = None
    logit_scale_init_value: float | None = None
    initializer_range: float | None = None
    dropout: float | None = None

    def new_model(self) -> dict[str, Any]:
        """The options given for a new model (``init_seed`` and gliclass config fields), as given."""
        return {f.name: getattr(self, f.name) for f in fields(self)[1:] if getattr(self, f.name) is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"max_length": self.max_length, **self.new_model()}


#: options ``from_encoder`` accepts, i.e. the gliclass config fields a new model may set
NEW_MODEL_OPTIONS = tuple(f.name for f in fields(GLiClassOptions)[2:])
