"""The result of classifying one text."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Prediction:
    """One text's result.

    Attributes:
        text: the input text.
        label: the chosen label: the best-scoring one (single-label), or the best-scoring label
            at or above its threshold (multi-label; ``None`` when no label reaches it).
        labels: single-label: the ``top_k`` best labels (default 1); multi-label: every label at
            or above its threshold, best first (at most ``top_k``).
        scores: every label's probability, in the caller's label order.
        multi_label: whether scores are independent sigmoids (True) or one softmax (False).
        truncated: True when the text was cut to fit the model's maximum length.
    """

    text: str
    label: str | None
    labels: list[str]
    scores: dict[str, float]
    multi_label: bool = False
    truncated: bool = False

    @property
    def ranked(self) -> list[tuple[str, float]]:
        """Every ``(label, score)`` pair, best first (ties keep the caller's order)."""
        return sorted(self.scores.items(), key=lambda item: -item[1])

    def to_pipeline(self) -> dict:
        """This result as transformers' zero-shot pipeline returns it: ``{"sequence", "labels", "scores"}``,
        every label, best first."""
        ranked = self.ranked
        return {"sequence": self.text, "labels": [name for name, _ in ranked], "scores": [score for _, score in ranked]}

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def __repr__(self) -> str:
        text = self.text if len(self.text) <= 60 else self.text[:57] + "..."
        return (f"Prediction(text={text!r}, label={self.label!r}, labels={self.labels!r}, scores={self.scores!r}, "
                f"multi_label={self.multi_label}, truncated={self.truncated})")

    def __str__(self) -> str:
        shown = ", ".join(f"{name}: {score:.3f}" for name, score in self.ranked[:5])
        return f"{self.label} ({shown})"
