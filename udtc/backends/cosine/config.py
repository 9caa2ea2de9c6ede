"""Options of the cosine backend (what ``udtc_config.json`` stores under ``options``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from udtc.backends.base import Options


@dataclass
class CosineOptions(Options):
    scale: float = 20.0  # App. E, Eq. (2) temperature (sentence-transformers' training scale)
    multi_label_shift: float = 0.22  # multi-label: sigmoid(scale * (cos - shift)); benchmarks/multi_label.py --backend cosine
    text_prefix: str = ""  # e.g. "query: " for E5-style models
    label_prefix: str = ""
    #: token limit; saved in sentence_bert_config.json, not in the options
    max_length: int | None = field(default=None, metadata={"saved": False})
