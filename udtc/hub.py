"""Resolve ``name_or_path`` to a local folder: a folder, a file, a package resource or a Hub id."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from udtc.defaults import DEFAULT_MODEL, PACKAGE_INSTALL_HINTS

# Weights in pickle formats, and exports udtc never reads, are not downloaded.
_IGNORE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.ot", "onnx/*", "openvino/*", "*.tflite"]


def resolve(name_or_path: str | os.PathLike | None, *, revision: str | None = None, token: str | None = None,
            local: bool = True, trust_remote_code: bool = False) -> Path:
    """Return a local path for ``name_or_path``.

    * ``None`` means the embedded default model (:data:`udtc.defaults.DEFAULT_MODEL`).
    * ``package:<module>/<sub/path>`` is a folder inside an installed Python package.
    * An existing local path is used as is (folder or file).
    * Anything shaped like ``owner/name`` is a Hugging Face Hub repo, fetched through
      ``huggingface_hub.snapshot_download`` (honours ``HF_HUB_OFFLINE``, ``HF_HOME``, the cache);
      code files are skipped unless ``trust_remote_code``. ``local=False`` never reads a local path
      (for ids a saved folder names). Every folder returned passes :func:`udtc.safety.check_folder`.
    """
    from udtc.safety import ModelRef, check_folder

    if isinstance(name_or_path, ModelRef):
        return name_or_path.path
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    name = os.fspath(name_or_path)
    if not name.strip():
        raise ValueError("name_or_path is empty; pass a folder, a Hub id or None for the default model")
    if name.startswith("package:"):
        path = _package_path(name)
        check_folder(path)
        return path
    path = Path(name).expanduser()
    if local and path.exists():
        if path.is_dir() and not any(path.iterdir()):
            raise FileNotFoundError(f"model folder {path} is empty; save a model there or pick another path")
        check_folder(path)
        return path
    if _looks_local(name):
        raise FileNotFoundError(f"no such model folder or file: {path}")
    path = _from_hub(name, revision=revision, token=token, trust_remote_code=trust_remote_code)
    check_folder(path)
    return path


def _looks_local(name: str) -> bool:
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or os.sep in name and os.sep != "/"
        or name.endswith((".gguf", ".safetensors"))
    )


def _package_path(name: str) -> Path:
    module, _, sub = name.removeprefix("package:").partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        hint = PACKAGE_INSTALL_HINTS.get(module, f"pip install {module}")
        raise FileNotFoundError(f"model {name!r} needs the Python package {module!r}, which is not installed; run: {hint}")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / sub if sub else root
    if not path.exists():
        raise FileNotFoundError(f"package {module!r} is installed but has no {sub!r} ({path})")
    return path


def _from_hub(repo_id: str, *, revision: str | None, token: str | None, trust_remote_code: bool = False) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from udtc.safety import CODE_PATTERNS

    ignore = _IGNORE_PATTERNS if trust_remote_code else _IGNORE_PATTERNS + CODE_PATTERNS
    try:
        return Path(snapshot_download(repo_id, revision=revision, token=token, ignore_patterns=ignore))
    except HFValidationError as err:
        raise ValueError(f"{repo_id!r} is neither a local folder nor a valid Hub id 'owner/name' "
                         f"({str(err).splitlines()[0]})") from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise FileNotFoundError(
            f"{repo_id!r} is neither a local folder nor a Hub model{' at revision ' + revision if revision else ''}: {err.__class__.__name__}"
        ) from None
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"{repo_id!r} is not a local folder, is not in the Hugging Face cache, and the Hub cannot be reached "
            "(offline or HF_HUB_OFFLINE=1); download it once online or pass a local folder"
        ) from None
    except HfHubHTTPError as err:
        raise OSError(f"could not download {repo_id!r} from the Hub: {err}") from None
