"""The batching loop between :meth:`Classifier.classify <udtc.classifier.Classifier.classify>` and a backend
(per-text options and long-text splitting included).

Texts are scored longest first, so a batch pads little. A backend whose text side does not depend on the
label set (``Backend.mixed_label_sets``, e.g. cosine and SCE: the text embedding is computed without the
labels) gets batches of texts with different label sets and scores them in one pass over the texts
(``Backend.score_each``); any other backend gets one label set per batch (``Backend.score``), texts grouped
by label set first. Either way each text gets raw logits in its own label order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from udtc.backends.base import Backend, Scores
from udtc.chunking import rescore


def score_texts(backend: Backend, texts: Sequence[str], inputs: Sequence[tuple[str, ...]], *, multi_label: bool,
                batch_size: int, options: Mapping[str, Any], per_text: Mapping[str, Sequence[Any]] | None = None,
                long_texts: str = "truncate", bar: Any = None) -> tuple[list[torch.Tensor], list[bool]]:
    """-> (logits of each text ``(len(inputs[i]),)``, truncated per text); ``inputs[i]`` are the label strings
    (template applied) text ``i`` is scored against; ``per_text`` options hold one value per text (the backend's
    ``per_text_options``); ``long_texts`` as ``classify`` (udtc/chunking.py); ``bar`` (tqdm) is advanced per batch."""
    per_text = per_text or {}
    n = len(texts)
    if backend.mixed_label_sets:
        order = sorted(range(n), key=lambda i: -len(texts[i]))
        batches = [order[start : start + batch_size] for start in range(0, n, batch_size)]
    else:
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, labels in enumerate(inputs):
            groups.setdefault(labels, []).append(i)
        batches = []
        for indices in groups.values():
            indices.sort(key=lambda i: -len(texts[i]))
            batches += [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
    logits: list[torch.Tensor] = [torch.empty(0)] * n
    truncated = [False] * n
    for chunk in batches:
        chunk_texts = [texts[i] for i in chunk]
        width = max(len(inputs[i]) for i in chunk)

        def score(pieces: list[str], owners: list[int], chunk: list[int] = chunk, width: int = width) -> Scores:
            """``pieces`` of the chunk's texts ``owners`` (row numbers), each against its text's label set."""
            kwargs = {**options, **{k: [v[chunk[r]] for r in owners] for k, v in per_text.items()}}
            if not backend.mixed_label_sets:
                return backend.score(pieces, list(inputs[chunk[0]]), multi_label=multi_label, batch_size=batch_size,
                                     **kwargs)
            out = backend.score_each(pieces, [list(inputs[chunk[r]]) for r in owners], multi_label=multi_label,
                                     batch_size=batch_size, **kwargs)
            pad = width - out.logits.shape[1]  # pieces of a few rows may have narrower label sets than the chunk
            return Scores(torch.nn.functional.pad(out.logits, (0, pad), value=float("-inf")), out.truncated) if pad > 0 else out

        with torch.inference_mode():
            out = rescore(score(chunk_texts, list(range(len(chunk)))), chunk_texts, score, long_texts)
        rows = out.logits.detach().float().cpu()  # (len(chunk), widest label set)
        if rows.shape != (len(chunk), width):
            raise RuntimeError(f"backend {backend.name!r} returned logits of shape {tuple(rows.shape)}, "
                               f"expected {(len(chunk), width)}")
        for row, i in enumerate(chunk):
            logits[i] = rows[row, : len(inputs[i])]
            truncated[i] = bool(out.truncated[row])
        if bar is not None:
            bar.update(len(chunk))
    return logits, truncated
