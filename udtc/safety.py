"""Trust and containment rules for model folders (README "Safety").

* Code runs only when the *caller* passes ``trust_remote_code=True``: a saved folder's options can
  never turn it on (:func:`udtc.hub.saved_options` refuses the key), and Hub downloads skip code files
  unless it is on (:data:`CODE_PATTERNS`).
* A model folder never makes udtc read outside itself: every symlink in it must resolve inside it
  (:func:`check_folder`; the Hugging Face cache's ``snapshots/<rev>/x -> ../../blobs/<hash>`` links
  of the same repo are allowed), every path it names must stay inside it (:func:`inside`), and a
  model it names by id (SCE ``embedder``/``encoder``, an adapter's ``base_model``) is resolved only
  as ``package:<module>/<path>``, a Hub id (never a local path of the working directory), or a
  relative path inside the folder (:func:`udtc.hub.named_model`, which applies these rules).
* Saved files carry no absolute local paths (:func:`portable_name`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

#: files a Hub download skips unless the caller passes trust_remote_code=True
CODE_PATTERNS = ["*.py", "*.pyc", "*.pyo", "*.pyd", "*.so", "*.dylib", "*.dll", "*.sh", "*.ipynb"]
#: options of a saved folder that name another model
MODEL_OPTIONS = ("embedder", "encoder")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class UnsafeFolderError(ValueError):
    """A model folder asks for something udtc refuses: code execution, or a read outside itself."""


class ModelRef(str):
    """A model name as saved (``str`` value) together with the local folder it resolved to."""

    path: Path
    local: bool

    def __new__(cls, name: str, path: Path, *, local: bool) -> ModelRef:
        ref = super().__new__(cls, name)
        ref.path, ref.local = path, local
        return ref


def is_portable(name: str) -> bool:
    """True for names that mean the same on every machine: ``package:...`` or a Hub id."""
    if isinstance(name, ModelRef):
        return not name.local
    return name.startswith("package:") or (bool(HUB_ID.match(name)) and not Path(name).expanduser().exists())


def portable_name(name: str | None) -> str | None:
    """``name`` as a saved file may carry it: a portable name as is, a local path by its folder name only."""
    if name is None or is_portable(str(name)):
        return None if name is None else str(name)
    return Path(os.fspath(name)).name or None


def _roots(folder: Path) -> list[Path]:
    roots = [folder.resolve()]
    blobs = folder.parent.parent / "blobs"  # huggingface_hub cache: models--o--n/snapshots/<rev> -> ../../blobs
    if folder.parent.name == "snapshots" and blobs.is_dir() and not blobs.is_symlink():  # a link could be anywhere
        roots.append(blobs.resolve())
    return roots


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def check_folder(folder: Path) -> None:
    """Refuse a folder holding a symlink that leaves it (or is broken); one clear line naming the link."""
    if not folder.is_dir():
        return
    roots = _roots(folder)
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            entry = Path(dirpath) / name
            if not entry.is_symlink():
                continue
            if not entry.exists():
                raise UnsafeFolderError(f"{entry} is a broken symlink (to {os.readlink(entry)}); "
                                        "replace it with the file it should point to")
            if not _within(entry.resolve(), roots):
                raise UnsafeFolderError(f"{entry} is a symlink to {entry.resolve()}, outside the model folder "
                                        f"{folder}; udtc never reads outside a model folder: copy the file in instead")


def inside(folder: Path, relative: str, what: str) -> Path:
    """``folder / relative`` after resolving symlinks, refused when it leaves ``folder``."""
    if not isinstance(relative, str):
        raise UnsafeFolderError(f"{folder}: {what} must be a relative path string, got {relative!r}")
    if os.path.isabs(relative) or relative.startswith("~"):
        raise UnsafeFolderError(f"{folder}: {what} is the absolute path {relative!r}; a model folder may only "
                                "name paths inside itself")
    path = folder / relative
    if not _within(path.resolve(), _roots(folder)):
        raise UnsafeFolderError(f"{folder}: {what} {relative!r} leads outside the model folder "
                                f"(to {path.resolve()}); a model folder may only name paths inside itself")
    return path


# ---------------------------------------------------------------------------------------------- errors
def check_encodable(text: str, where: str) -> None:
    """Refuse a string that is not valid Unicode text (a lone surrogate), which tokenizers cannot read."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"{where} holds a lone surrogate U+{ord(text[err.start]):04X} at position {err.start}, which "
                         "is not valid Unicode text; fix the input (e.g. decode it with errors='replace')") from None


def load_error(folder: Path, err: Exception) -> ValueError | None:
    """A one-line error for a folder whose files are malformed (e.g. a broken tokenizer.json), or None."""
    import json

    if not (isinstance(err, json.JSONDecodeError) or type(err) is Exception):  # tokenizers raises bare Exception
        return None
    files = sorted(folder.rglob("*.json")) if folder.is_dir() else []
    for file in files:
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, OSError) as bad:
            return ValueError(f"{file} is malformed ({str(bad).splitlines()[0]}); re-download or re-save the model")
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ValueError(f"could not read the tokenizer files in {folder} ({message}); re-download or re-save the model")


# ---------------------------------------------------------------------------------------------- saving
def _source(name: str) -> Path:
    if isinstance(name, ModelRef):
        return name.path
    if str(name).startswith("package:"):
        import importlib.util

        module, _, sub = str(name).removeprefix("package:").partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"cannot copy {name!r} in: the Python package {module!r} is not installed")
        return Path(next(iter(spec.submodule_search_locations))) / sub
    return Path(os.fspath(name)).expanduser()


#: set by :func:`self_contained`: ``package:`` models are copied into saved folders too
_COPY_PACKAGES: ContextVar[bool] = ContextVar("udtc_copy_packages", default=False)


@contextmanager
def self_contained(on: bool = True) -> Iterator[None]:
    """While active, folders being saved copy in the ``package:`` models they build on as well as local
    ones (``save_pretrained(..., self_contained=True)``), so loading them needs no pip package."""
    token = _COPY_PACKAGES.set(on)
    try:
        yield
    finally:
        _COPY_PACKAGES.reset(token)


def _kept_by_name(name: str) -> bool:
    """Saved by name (not copied in): a Hub id, or a ``package:`` model unless :func:`self_contained`."""
    if str(name).startswith("package:"):
        return not _COPY_PACKAGES.get()
    return is_portable(name)


def package_models(options: dict[str, Any]) -> list[str]:
    """The ``package:`` models a backend's options name (what a self-contained save copies in)."""
    return list(dict.fromkeys(str(options[k]) for k in MODEL_OPTIONS
                              if isinstance(options.get(k), str) and str(options[k]).startswith("package:")))


def saved_model_names(embedder: str, encoder: str | None) -> tuple[str, str | None]:
    """How a folder names the models it builds on: portable names as is, local folders (and, when
    self-contained, ``package:`` models) as the copies :func:`bundle_local_models` puts inside it."""
    saved = str(embedder) if _kept_by_name(embedder) else "embedder"
    if encoder is None or encoder == embedder:
        return saved, None if encoder is None else saved
    return saved, str(encoder) if _kept_by_name(encoder) else "encoder"


#: the files a model folder udtc copies into another may hold: weights, configs, tokenizer files, card and
#: licence; never pickles, logs, keys or other stray files (they would be uploaded with it)
MODEL_FILES = ("*.safetensors", "*.gguf", "config*.json", "*_config.json", "tokenizer*.json", "special_tokens_map.json",
               "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt", "*.model", "*.jinja", "modules.json",
               "*.index.json", "udtc_head.json", "calibration.json", "README.md", "LICENSE*", "NOTICE*")


def _copy_model(source: Path, target: Path) -> None:
    import shutil
    from fnmatch import fnmatch

    def skipped(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if n.startswith(".") or not (os.path.isdir(os.path.join(directory, n))
                                                             or any(fnmatch(n, p) for p in MODEL_FILES))]

    shutil.copytree(source, target, ignore=skipped)


def bundle_local_models(folder: Path, embedder: str, encoder: str | None) -> None:
    """Copy local (non-portable) models a folder builds on into it, so it is self-contained."""

    for name, sub in ((embedder, "embedder"), (encoder, "encoder")):
        if name is None or _kept_by_name(name) or (sub == "encoder" and name == embedder):
            continue
        source = _source(name)
        if source.resolve() != (folder / sub).resolve():
            _copy_model(source, folder / sub)


def bundle_base(folder: Path, base: str | None) -> str | None:
    """How an adapter folder names its base model: a portable name as is; a local folder or file is
    copied into ``folder/base/`` and named by that path, so the adapter never points outside itself."""
    import shutil

    if base is None or _kept_by_name(base):
        return base
    source = _source(base)
    if source.is_dir():
        _copy_model(source, folder / "base")
        return "base"
    (folder / "base").mkdir()
    shutil.copy2(source, folder / "base" / source.name)
    return f"base/{source.name}"


def refuse_pickle(folder: Path) -> None:
    """Pickle weights and no safetensors: say how to convert them (before any backend is asked)."""
    if folder.is_dir() and not any(folder.glob("*.safetensors")) and not any(folder.glob("*.gguf")):
        pickled = sorted(p.name for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt") for p in folder.glob(pattern))
        if pickled:
            raise ValueError(f"{folder} has only pickle weights ({', '.join(pickled)}); udtc loads safetensors only, "
                             "because pickle can run code. If you trust the file, convert it once: python -c \"from "
                             f"transformers import AutoModel; AutoModel.from_pretrained('{folder}').save_pretrained("
                             f"'{folder}')\" (writes model.safetensors)")
