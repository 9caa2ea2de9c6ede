"""Options of the sce backend (what ``udtc_config.json`` stores under ``options``)."""

from __future__ import annotations

from dataclasses import dataclass

from udtc.backends.base import Options

LABEL_INPUTS = ("tokens", "tokens+embedding")


@dataclass
class SCEOptions(Options):
    embedder: str | None = None  # the frozen external sentence embedder f (required)
    encoder: str | None = None  # whose layers initialised the SCE encoder; the embedder's own when None
    layers: list[int] | None = None  # which of its layers; all the saved ones when None
    label_attention: bool = True
    residual: bool = True
    label_input: str = "tokens"  # or "tokens+embedding"
    max_label_tokens: int = 16
    multi_label_shift: float = -0.03
