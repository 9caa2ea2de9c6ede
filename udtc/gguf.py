"""GGUF checkpoints (llama.cpp's single-file format): recognise them and convert them, once, into a
regular transformers folder (``config.json``, ``model.safetensors``, tokenizer files).

transformers reads a GGUF file and dequantises it to float32 (``from_pretrained(dir, gguf_file=...)``,
which needs the optional packages ``gguf`` and ``accelerate``), but refuses to ``save_pretrained`` a
model loaded that way. So the conversion rebuilds the model from the GGUF's config without its
``quantization_config``, loads the dequantised state dict into it and saves that.

The result is cached under ``$UDTC_CACHE/gguf/<sha256 of the file>`` (``UDTC_CACHE`` defaults to
``~/.cache/udtc``): the first load of a file converts it (tens of seconds for a 135M model), every
later load of the same bytes, from any path, reuses the folder. A folder is used only once it is
complete: it is written next to its final place and renamed into it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from udtc import atomic

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
#: written last into a converted folder; a folder without it is not used
DONE_NAME = "udtc_gguf.json"
_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def cache_root() -> Path:
    """The udtc cache folder: ``$UDTC_CACHE`` or ``~/.cache/udtc``."""
    return Path(os.environ.get("UDTC_CACHE") or Path.home() / ".cache" / "udtc").expanduser()


def is_gguf(path: Path) -> bool:
    """True for a ``.gguf`` file, or a folder holding one and no ``config.json`` (cheap: no parsing)."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() == ".gguf" or _has_magic(path)
    return path.is_dir() and not (path / "config.json").exists() and any(_gguf_files(path))


def find_gguf(path: Path) -> Path:
    """The GGUF file ``path`` names: the file itself, or the only ``.gguf`` file in a folder."""
    path = Path(path)
    if path.is_file():
        if not _has_magic(path):
            raise ValueError(f"{path} is not a GGUF file (it does not start with the bytes 'GGUF')")
        return path
    found = sorted(_gguf_files(path)) if path.is_dir() else []
    if not found:
        raise FileNotFoundError(f"no .gguf file in {path}")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ValueError(f"{path} holds several GGUF files ({names}); pass the path of the one to load")
    return found[0]


def gguf_to_folder(path: Path, *, cache_dir: Path | None = None) -> Path:
    """A transformers folder holding the model in ``path`` (a GGUF file or a folder with one).

    Converts on the first call for a given file content and reuses the cached folder afterwards.
    """
    file = find_gguf(path)
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "gguf"
    digest = file_sha256(file)
    target = root / digest
    if (target / DONE_NAME).exists():
        return target
    _check_dependencies()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}.", dir=root))
    atomic.honour_umask(tmp)
    try:
        logger.warning("converting %s to a transformers folder in %s (once; later loads reuse it)", file, target)
        convert(file, tmp)
        (tmp / DONE_NAME).write_text(json.dumps({"source": str(file), "sha256": digest,
                                                 "size": file.stat().st_size}, indent=2) + "\n", encoding="utf-8")
        if target.exists():  # an unfinished folder from an interrupted run, or another process won the race
            if (target / DONE_NAME).exists():
                return target
            shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert(file: Path, out: Path) -> None:
    """Dequantise the GGUF ``file`` and write it as a float32 safetensors transformers folder ``out``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = file.parent, file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
    config = AutoConfig.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                  trust_remote_code=False)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(loaded.state_dict(), strict=False)
    tied = {k for k in result.missing_keys if k.endswith("lm_head.weight")} if config.tie_word_embeddings else set()
    if set(result.missing_keys) - tied or result.unexpected_keys:
        raise ValueError(f"converting {file}: the GGUF weights do not match the {type(model).__name__} built from its "
                         f"config (missing {sorted(set(result.missing_keys) - tied)[:5]}, unexpected "
                         f"{sorted(result.unexpected_keys)[:5]})")
    del loaded
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def file_sha256(file: Path) -> str:
    """Hex sha256 of a file's bytes, remembered for the process per (path, size, mtime)."""
    stat = file.stat()
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def _check_dependencies() -> None:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"loading a GGUF file needs the packages {', '.join(missing)}: "
                          "pip install 'udtc[gguf]' (or: pip install gguf accelerate)")


def _gguf_files(folder: Path):
    return (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".gguf")


def _has_magic(file: Path) -> bool:
    try:
        with file.open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False
