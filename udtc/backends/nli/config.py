"""Options of the nli backend (what ``udtc_config.json`` stores under ``options``)."""

from __future__ import annotations

from dataclasses import dataclass

from udtc.backends.base import Options


@dataclass
class NLIOptions(Options):
    max_length: int | None = None  # tokens per (premise, hypothesis) pair; the tokenizer's limit when None

    def __post_init__(self) -> None:
        value = self.max_length
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"max_length must be a positive integer, got {value!r}")
