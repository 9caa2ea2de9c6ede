"""Options of the nli backend (what ``udtc_config.json`` stores under ``options``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from udtc.backends.base import Options

#: the classes of a head built by ``init_seed`` on a plain encoder (entailment first)
NEW_HEAD_CLASSES = ("entailment", "not_entailment")


@dataclass
class NLIOptions(Options):
    max_length: int | None = None  # tokens per (premise, hypothesis) pair; the tokenizer's limit when None
    #: a plain encoder gets a new seeded 2-way head (``NEW_HEAD_CLASSES``): the base a LoRA adapter or sparse
    #: change names by reference (saved only when set; ignored when the folder is an NLI model already)
    init_seed: int | None = None

    def __post_init__(self) -> None:
        # max_length: checked for every backend by Options.parse (udtc.backends.base.check_max_length)
        seed = self.init_seed
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"init_seed must be a non-negative integer, got {seed!r}")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if out["init_seed"] is None:
            del out["init_seed"]
        return out
