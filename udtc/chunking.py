"""Long texts: split into pieces the model reads whole, scored one by one, scores aggregated.

``classify(..., long_texts="max" | "mean")`` replaces silent truncation (``"truncate"``, the default,
as every peer does): a text the backend reports as truncated is cut in two at the whitespace nearest
its middle (the middle character when it has none, e.g. Chinese), each half is scored against the same
label set, a half still too long is cut again, and so on until every piece fits. The logits of the
pieces are then aggregated per label: ``max`` (a label counts when any part of the text is about it; for
multi-label, the max of the logits is the max of the scores) or ``mean`` (the average over the pieces).

Backend-agnostic by construction: it relies only on ``Scores.truncated``, which every backend reports
from its own budget (the text tokens left after the label block for GLiClass, after the hypothesis for
NLI, the sequence length for cosine and SCE). Label-set invariant, because each piece is scored by the
same invariant backend. Cost: a truncated text is read once whole (cut) and then in about
``2 * length / budget`` pieces; texts that fit cost nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from udtc.backends.base import Scores

MODES = ("truncate", "max", "mean")


def check_mode(long_texts: object) -> None:
    if long_texts not in MODES:
        raise ValueError(f"long_texts must be one of {', '.join(map(repr, MODES))}, got {long_texts!r}")


def halve(text: str) -> list[str]:
    """``text`` cut in two at the whitespace nearest its middle (else at the middle character)."""
    middle = len(text) // 2
    left, right = text.rfind(" ", 0, middle + 1), text.find(" ", middle)
    cuts = [c for c in (left, right) if 0 < c < len(text) - 1]
    cut = min(cuts, key=lambda c: abs(c - middle)) if cuts else middle
    pieces = [text[:cut].strip(), text[cut:].strip()]
    return [p for p in pieces if p] or [text]


def rescore(out: Scores, texts: list[str], score: Callable[[list[str], list[int]], Scores], mode: str) -> Scores:
    """``out`` (scores of ``texts``) with every truncated text's row replaced by the aggregate of its pieces.

    ``score(pieces, owners)`` scores pieces against the label set; ``owners[j]`` is the row of ``texts``
    piece j comes from (for per-text options). A piece that cannot be cut further (one character) keeps
    its truncated flag."""
    if mode == "truncate" or not any(out.truncated):
        return out
    logits, truncated = out.logits.clone(), list(out.truncated)
    rows: dict[int, list[torch.Tensor]] = {}
    still_cut: set[int] = set()
    pending = [(i, texts[i]) for i, cut in enumerate(out.truncated) if cut]
    while pending:
        pieces = [(i, piece) for i, text in pending for piece in halve(text)]
        scored = score([piece for _, piece in pieces], [i for i, _ in pieces])
        pending = []
        for (i, piece), row, cut in zip(pieces, scored.logits, scored.truncated):
            if cut and len(piece) > 1:
                pending.append((i, piece))
                continue
            rows.setdefault(i, []).append(row)
            if cut:
                still_cut.add(i)
    for i, parts in rows.items():
        stacked = torch.stack(parts)  # (pieces, L)
        logits[i] = stacked.max(0).values if mode == "max" else stacked.mean(0)
        truncated[i] = i in still_cut
    return Scores(logits, truncated)
