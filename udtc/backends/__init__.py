"""The closed registry of backends.

Built-ins are listed once, here, in detection order. Third parties plug in through the
``udtc.backends`` entry-point group (``name = "package.module:BackendClass"``); an import path
is never persisted in a saved folder, only the registered name.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from udtc.backends.base import Backend, Scores

# name -> module holding the class; order is detection order (most specific first).
_BUILTINS: dict[str, str] = {
    "gliclass": "udtc.backends.gliclass.backend:GLiClassBackend",
    "nli": "udtc.backends.nli.backend:NLIBackend",
    "llm-head": "udtc.backends.llm.head:LlmHeadBackend",
    "llm-prompt": "udtc.backends.llm.prompt:LlmPromptBackend",
    "sce": "udtc.backends.sce.backend:SCEBackend",
    "cosine": "udtc.backends.cosine.backend:CosineBackend",
}

__all__ = ["Backend", "Scores", "available_backends", "detect_backend", "get_backend"]


@cache
def _plugins() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group="udtc.backends") if ep.name not in _BUILTINS}


def available_backends() -> list[str]:
    """Names of every backend that can be used, built-ins first."""
    return [*_BUILTINS, *sorted(_plugins())]


def get_backend(name: str) -> type[Backend]:
    """The backend class registered under ``name``; an unknown name lists the valid ones."""
    if name in _BUILTINS:
        module, _, attr = _BUILTINS[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
    elif name in _plugins():
        cls = _plugins()[name].load()  # type: ignore[attr-defined]
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(f"entry point udtc.backends:{name} does not name a udtc Backend subclass")
    else:
        raise ValueError(
            f"unknown backend {name!r}; valid backends are: {', '.join(available_backends())}"
        )
    if cls.name != name:
        raise TypeError(f"backend class {cls.__qualname__} declares name {cls.name!r}, registered as {name!r}")
    return cls


def detect_backend(folder: Path) -> str:
    """The name of the first backend whose ``detect`` accepts ``folder``."""
    for name in available_backends():
        if get_backend(name).detect(folder):
            return name
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    raise ValueError(
        f"no udtc backend recognises the checkpoint in {folder} (files: {', '.join(found) or 'none'}); "
        f"pass backend=... with one of: {', '.join(available_backends())}"
    )
