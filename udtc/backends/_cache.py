"""A bounded least-recently-used cache of per-label (or per-label-set) values, shared by backends."""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

V = TypeVar("V")


#: default bound of one cache in bytes (label strings + cached tensors): 256 MiB
DEFAULT_MAX_BYTES = 256 * 2**20


def _nbytes(key: Hashable, value: object) -> int:
    numel, size = getattr(value, "numel", None), getattr(value, "element_size", None)
    held = numel() * size() if callable(numel) and callable(size) else sys.getsizeof(value)
    return sys.getsizeof(key) + held


class LabelCache(Generic[V]):
    """Values keyed by the exact label string the model reads (or any hashable key, e.g. a label set); the
    least recently used are dropped beyond ``size`` entries or ``max_bytes`` bytes (keys + tensors; default
    256 MiB)."""

    def __init__(self, size: int, max_bytes: int = DEFAULT_MAX_BYTES):
        self.size, self.max_bytes = size, max_bytes
        self.nbytes = 0
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._sizes: dict[Hashable, int] = {}

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The value of one key; ``compute()`` runs if it is not cached."""
        return self.lookup([key], lambda _: [compute()])[0]

    def lookup(self, labels: Sequence[Hashable], compute: Callable[[list], Iterable[V]]) -> list[V]:
        """The value of every label, in order; ``compute`` runs once, on the labels not cached yet."""
        missing = list(dict.fromkeys(x for x in labels if x not in self._data))
        if missing:
            for key, value in zip(missing, compute(missing)):
                self._data[key] = value
                self._sizes[key] = _nbytes(key, value)
                self.nbytes += self._sizes[key]
        values = [self._data[x] for x in labels]
        for x in labels:
            self._data.move_to_end(x)
        while len(self._data) > self.size or (self.nbytes > self.max_bytes and self._data):
            key, _ = self._data.popitem(last=False)
            self.nbytes -= self._sizes.pop(key)
        return values

    def __contains__(self, label: object) -> bool:
        return label in self._data

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
        self._sizes.clear()
        self.nbytes = 0
