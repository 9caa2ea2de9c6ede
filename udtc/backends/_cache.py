"""A bounded least-recently-used cache of per-label values (embeddings, token ids), shared by backends."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

V = TypeVar("V")


class LabelCache(Generic[V]):
    """Values keyed by the exact label string the model reads; the oldest beyond ``size`` are dropped."""

    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict[str, V] = OrderedDict()

    def lookup(self, labels: list[str], compute: Callable[[list[str]], Iterable[V]]) -> list[V]:
        """The value of every label, in order; ``compute`` runs once, on the labels not cached yet."""
        missing = list(dict.fromkeys(x for x in labels if x not in self._data))
        if missing:
            self._data.update(zip(missing, compute(missing)))
        values = [self._data[x] for x in labels]
        for x in labels:
            self._data.move_to_end(x)
        while len(self._data) > self.size:
            self._data.popitem(last=False)
        return values

    def __contains__(self, label: object) -> bool:
        return label in self._data

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
