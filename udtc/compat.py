"""Version workarounds, third-party quirks and udtc's own moved modules, kept in one place."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' progress bars ("Loading weights", "Writing model shards"), restoring the user's
    setting after."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def cache_keyword(model) -> str:
    """The keyword a transformers model's ``forward`` takes a KV cache under: ``cache`` in transformers 5.x,
    ``past_key_values`` before (5.x still takes it with a FutureWarning, until 5.40)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def output_cache(out):
    """The KV cache of a transformers model output (``cache`` in 5.x, ``past_key_values`` before)."""
    return out.cache if "cache" in out else out.past_key_values


def enable_checkpointing(model) -> None:
    """Non-reentrant gradient (activation) checkpointing on a transformers model; transformers 5.x
    renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable``."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def is_checkpointing(model) -> bool:
    """Whether activation checkpointing is on (transformers 5.x renamed ``is_gradient_checkpointing``)."""
    if hasattr(model, "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(getattr(model, "is_gradient_checkpointing", False))


#: modules that moved in udtc 0.2 (issue #16) -> where they are now; the old names still import, with a warning
MOVED_MODULES = {
    "udtc.backends.llm_prompt": "udtc.backends.llm.prompt",
    "udtc.backends.llm_head": "udtc.backends.llm.head",
    "udtc.backends.gliclass_model": "udtc.backends.gliclass.model",
    "udtc.backends._tokenize": "udtc.backends._text",
    "udtc.training.hub": "udtc.hub",
    "udtc.backends.sce_train": "benchmarks.sce_train",  # the SCE recipe; in a source checkout only
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a moved module's old name as its new module, with a ``DeprecationWarning``."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import it from there (the old name goes in a later release)",
                      DeprecationWarning, stacklevel=3)
        try:
            return importlib.import_module(new)
        except ModuleNotFoundError as err:
            if err.name != new.split(".")[0]:
                raise
            raise ImportError(f"{spec.name} moved to {new} (benchmarks/sce_train.py in a udtc source checkout), "
                              "which is not part of the installed package; the label synonym preset is "
                              "udtc.backends.sce.train.SYNONYMS") from None

    def exec_module(self, module: ModuleType) -> None:
        sys.modules[module.__spec__.name if module.__spec__ else module.__name__] = module


def install_moved_modules() -> None:
    """Let the old module names of :data:`MOVED_MODULES` import (idempotent)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
