"""Text plumbing shared by the backends: tokenisation in which special tokens in user text stay
plain text, the character cap that cuts (and flags) long texts before they cost time or memory,
special-token probes, and the label cache (``LabelCache``, defined in ``_cache.py``)."""

from __future__ import annotations

import math
from typing import Any

from udtc.backends._cache import LabelCache

__all__ = ["LabelCache", "cap_chars", "encode", "pack", "special_ids", "token_id"]

#: characters kept per allowed token before tokenising; bounds the work on a 1 MB text.
_CHARS_PER_TOKEN = 64


def encode(tokenizer: Any, texts: list[str], max_length: int, pairs: list[str] | None = None,
           truncation: str | bool = True) -> tuple[Any, list[bool]]:
    """Tokenise ``texts`` (and optional second segments) as plain text, padded to the batch.

    Returns the ``BatchEncoding`` as torch tensors and, per row, whether anything was cut.
    ``split_special_tokens=True`` makes a label or text such as ``"[SEP]"`` plain characters,
    never the special token. With pairs, ``truncation="only_first"`` cuts only the text.
    """
    texts, cut = cap_chars(texts, max_length)
    enc = tokenizer(texts, pairs, padding=True, truncation=truncation, max_length=max_length,
                    split_special_tokens=True, return_tensors="pt")
    encodings = getattr(enc, "encodings", None)
    if encodings:
        over = [bool(e.overflowing) for e in encodings]
    else:  # a tokenizer without the Rust backend: compare with an untruncated pass
        full = tokenizer(texts, pairs, truncation=False, split_special_tokens=True, verbose=False)["input_ids"]
        over = [len(ids) > max_length for ids in full]
    return enc, [a or b for a, b in zip(cut, over)]


def cap_chars(texts: list[str], max_length: int) -> tuple[list[str], list[bool]]:
    """``texts`` cut to the characters ``max_length`` tokens can hold at most, and whether each was cut."""
    limit = max(max_length * _CHARS_PER_TOKEN, 4096)
    return [t[:limit] for t in texts], [len(t) > limit for t in texts]


def special_ids(tokenizer: Any, *, strict: bool = True) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a single sequence (e.g. [CLS] and [SEP], or BOS).

    When they cannot be told apart: a ``ValueError`` if ``strict``, else ``([], [])``."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    if plain:
        for i in range(len(full) - len(plain) + 1):
            if full[i : i + len(plain)] == plain:
                return list(full[:i]), list(full[i + len(plain):])
    if strict:
        raise ValueError("cannot tell which special tokens this tokenizer adds around a sequence")
    return [], []


def token_id(tokenizer: Any, token: str) -> int | None:
    """The id of ``token`` in the vocabulary, or None when it is unknown."""
    index = tokenizer.convert_tokens_to_ids(token)
    return None if index is None or index == tokenizer.unk_token_id else int(index)


def pack(sizes: list[int], room: int) -> list[list[int]]:
    """Contiguous groups of labels whose sizes fit ``room``: as few as greedy packing needs, evenly filled."""
    greedy: list[list[int]] = []
    current: list[int] = []
    used = 0
    for j, size in enumerate(sizes):
        if current and used + size > room:
            greedy.append(current)
            current, used = [], 0
        current.append(j)
        used += size
    greedy.append(current)
    if len(greedy) == 1:
        return greedy
    target = math.ceil(sum(sizes) / len(greedy))
    balanced: list[list[int]] = []
    current, used = [], 0
    for j, size in enumerate(sizes):
        if current and (used + size > room or used >= target):
            balanced.append(current)
            current, used = [], 0
        current.append(j)
        used += size
    balanced.append(current)
    return balanced if len(balanced) == len(greedy) else greedy
