"""The Hugging Face Hub and other places models come from: :func:`resolve` turns ``name_or_path`` into a
local folder (a folder, a file, a package resource or a Hub id); :func:`upload` sends a saved folder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from udtc.defaults import DEFAULT_MODEL, PACKAGE_INSTALL_HINTS
from udtc.logs import get_logger

logger = get_logger(__name__)

# Weights in pickle formats, and exports udtc never reads, are not downloaded.
_IGNORE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.ot", "onnx/*", "openvino/*", "*.tflite"]


def resolve(name_or_path: str | os.PathLike | None, *, revision: str | None = None, token: str | None = None) -> Path:
    """Return a local path for ``name_or_path``.

    * ``None`` means the embedded default model (:data:`udtc.defaults.DEFAULT_MODEL`).
    * ``package:<module>/<sub/path>`` is a folder inside an installed Python package.
    * An existing local path is used as is (folder or file).
    * Anything shaped like ``owner/name`` is a Hugging Face Hub repo, fetched through
      ``huggingface_hub.snapshot_download`` (honours ``HF_HUB_OFFLINE``, ``HF_HOME``, the cache).
    """
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    name = os.fspath(name_or_path)
    if not name.strip():
        raise ValueError("name_or_path is empty; pass a folder, a Hub id or None for the default model")
    if name.startswith("package:"):
        return _package_path(name)
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir() and not any(path.iterdir()):
            raise FileNotFoundError(f"model folder {path} is empty; save a model there or pick another path")
        return path
    if _looks_local(name):
        raise FileNotFoundError(f"no such model folder or file: {path}")
    return _from_hub(name, revision=revision, token=token)


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


def _from_hub(repo_id: str, *, revision: str | None, token: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(
            snapshot_download(repo_id, revision=revision, token=token, ignore_patterns=_IGNORE_PATTERNS)
        )
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


def upload(folder: Path, repo_id: str, *, token: str, private: bool = True) -> dict[str, Any]:
    """Create ``repo_id`` (private by default; an existing repo is reused) and upload ``folder``.

    A failed upload keeps the local folder: it warns with the folder's path and the command that
    retries, and returns ``{"repo_id", "error", "local_folder"}`` instead of raising.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload udtc fine-tuned model",
                                   ignore_patterns=["checkpoints/*", ".*"])
    except Exception as err:  # noqa: BLE001 - network, auth, server: the trained model must not be lost either way
        message = f"{err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        logger.warning(f"upload to the Hub repo {repo_id!r} failed ({message}); the trained model is kept in "
                       f"{folder.resolve()}; retry with: hf upload {repo_id} {folder.resolve()}{' --private' if private else ''}")
        return {"repo_id": repo_id, "error": message, "local_folder": str(folder.resolve())}
    return {"repo_id": repo_id, "url": str(url), "commit": getattr(commit, "oid", None), "private": private}
