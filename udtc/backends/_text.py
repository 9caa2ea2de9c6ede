"""Tokenisation shared by the encoder backends: special tokens in user text stay plain text,
long texts are cut (and flagged) before they cost time or memory."""

from __future__ import annotations

from typing import Any

#: characters kept per allowed token before tokenising; bounds the work on a 1 MB text.
_CHARS_PER_TOKEN = 64


def encode(tokenizer: Any, texts: list[str], max_length: int, pairs: list[str] | None = None,
           truncation: str | bool = True) -> tuple[Any, list[bool]]:
    """Tokenise ``texts`` (and optional second segments) as plain text, padded to the batch.

    Returns the ``BatchEncoding`` as torch tensors and, per row, whether anything was cut.
    ``split_special_tokens=True`` makes a label or text such as ``"[SEP]"`` plain characters,
    never the special token. With pairs, ``truncation="only_first"`` cuts only the text.
    """
    limit = max(max_length * _CHARS_PER_TOKEN, 4096)
    cut = [len(t) > limit for t in texts]
    texts = [t[:limit] for t in texts]
    enc = tokenizer(texts, pairs, padding=True, truncation=truncation, max_length=max_length,
                    split_special_tokens=True, return_tensors="pt")
    encodings = getattr(enc, "encodings", None)
    if encodings:
        over = [bool(e.overflowing) for e in encodings]
    else:  # a tokenizer without the Rust backend: compare with an untruncated pass
        full = tokenizer(texts, pairs, truncation=False, split_special_tokens=True)["input_ids"]
        over = [len(ids) > max_length for ids in full]
    return enc, [a or b for a, b in zip(cut, over)]
