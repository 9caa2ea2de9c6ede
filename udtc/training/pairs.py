"""Which backend and which classes ``finetune(hypothesis_column=...)`` (premise/hypothesis pair training) uses."""

from __future__ import annotations

from typing import Any, cast

from udtc.adapters import SPARSE_DELTA
from udtc.backends import available_backends, get_backend
from udtc.backends.base import Trainable
from udtc.classifier import Classifier
from udtc.compat import quiet_loading
from udtc.config import ADAPTER_CONFIG
from udtc.hub import resolve


def pair_backend(model: Any, backend: str | None) -> Any:
    """Pair training: the backend class that trains on premise/hypothesis pairs (named, implied by a
    Classifier, or the one registered backend that does)."""
    pair = [n for n in available_backends() if getattr(get_backend(n), "trains_pairs", False)]
    name = model.backend.name if isinstance(model, Classifier) else backend or (pair[0] if len(pair) == 1 else None)
    if name not in pair:
        raise ValueError(f"hypothesis_column trains an NLI cross-encoder, which is the {' or '.join(map(repr, pair))} "
                         f"backend, not {name!r}; start from an NLI model or a plain encoder")
    return get_backend(name)


def pair_classes(model: Any, pair_cls: Any, *, method: str, merge: bool, options: dict[str, Any]) -> list[str] | None:
    """The NLI classes pair training keeps (None: a plain encoder, which gets a new head)."""
    folder = None if isinstance(model, Classifier) else resolve(model)
    if folder is not None and not ((folder / ADAPTER_CONFIG).exists() or (folder / SPARSE_DELTA).exists()):
        return cast(list[str] | None, pair_cls.pair_classes(folder, method=method, merge=merge, options=options))
    with quiet_loading():  # finetune's change to a base (e.g. the shipped NLI_MINILM) has its classes once loaded
        loaded = model if folder is None else Classifier.from_pretrained(folder, backend=pair_cls.name, device="cpu", **options)
    return cast(Trainable, loaded.backend).model_pair_classes()
