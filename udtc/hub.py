"""The Hugging Face Hub and other places models come from: :func:`resolve` turns ``name_or_path`` into a
local folder (a folder, a file, a package resource or a Hub id); :func:`named_model` and
:func:`saved_options` resolve what a saved folder names under the rules of :mod:`udtc.safety`;
:func:`upload` sends the files udtc wrote in a saved folder."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path, PurePosixPath
from typing import Any

from udtc import safety
from udtc.config import CONFIG_NAME, read_json
from udtc.defaults import DEFAULT_MODEL, PACKAGE_INSTALL_HINTS
from udtc.logs import get_logger

logger = get_logger(__name__)

# Weights in pickle formats, and exports udtc never reads, are not downloaded (an udtc export's own graphs,
# which its udtc_config.json lists, are fetched in a second pass: :func:`_exported_graphs`).
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
    if isinstance(name_or_path, safety.ModelRef):
        return name_or_path.path
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    name = os.fspath(name_or_path)
    if not name.strip():
        raise ValueError("name_or_path is empty; pass a folder, a Hub id or None for the default model")
    if name.startswith("package:"):
        path = _package_path(name)
        safety.check_folder(path)
        return path
    path = Path(name).expanduser()
    if local and path.exists():
        if path.is_dir() and not any(path.iterdir()):
            raise FileNotFoundError(f"model folder {path} is empty; save a model there or pick another path")
        safety.check_folder(path)
        return path
    if _looks_local(name):
        raise FileNotFoundError(f"no such model folder or file: {path}")
    path = _from_hub(name, revision=revision, token=token, trust_remote_code=trust_remote_code)
    safety.check_folder(path)
    return path


def named_model(folder: Path, name: Any, what: str, *, trust_remote_code: bool = False,
                token: str | None = None) -> safety.ModelRef:
    """Resolve a model that a saved folder names (``what``, e.g. ``"embedder"``) under the folder rules
    (:mod:`udtc.safety`)."""
    if not isinstance(name, str) or not name.strip():
        raise safety.UnsafeFolderError(f"{folder}: {what} must be a model name, got {name!r}")
    if name.startswith("package:"):
        return safety.ModelRef(name, resolve(name), local=False)
    if not os.path.isabs(name) and not name.startswith("~") and (folder / name).exists():
        return safety.ModelRef(name, safety.inside(folder, name, what), local=True)
    if safety.HUB_ID.match(name):
        return safety.ModelRef(name, resolve(name, local=False, trust_remote_code=trust_remote_code, token=token),
                               local=False)
    fix = ("copy that model into the folder (finetune saves a local base as base/) and name it by its path there"
           if what == "base_model" else f"pass it yourself (e.g. {what}=...)")
    raise safety.UnsafeFolderError(
        f"{folder} names its {what} as {name!r}, a path outside the folder; a saved folder may name another "
        f"model only as 'package:<module>/<path>', a Hub id 'owner/name', or a path inside itself. If you trust "
        f"that path, {fix}")


def saved_options(folder: Path, options: dict[str, Any], caller: dict[str, Any], *,
                  token: str | None = None) -> dict[str, Any]:
    """A saved folder's backend options, checked: never ``trust_remote_code``, models it names resolved
    by :func:`named_model`. Options the caller passes (``caller``) are the caller's own and win."""
    if "trust_remote_code" in options:
        raise safety.UnsafeFolderError(
            f"{folder}/udtc_config.json sets trust_remote_code; a model folder can never turn on code execution. "
            "Remove the key; if you trust this folder's code, pass trust_remote_code=True yourself")
    trust = bool(caller.get("trust_remote_code", False))
    checked = dict(options)
    for key in safety.MODEL_OPTIONS:
        if key in checked and key not in caller and checked[key] is not None:
            checked[key] = named_model(folder, checked[key], key, trust_remote_code=trust, token=token)
    return checked


def _looks_local(name: str) -> bool:
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or os.sep in name and os.sep != "/"
        or name.endswith((".gguf", ".safetensors"))
    )


def _package_path(name: str) -> Path:
    module, _, sub = name.removeprefix("package:").partition("/")
    parts = PurePosixPath(sub).parts
    if not module.isidentifier() or sub.startswith("/") or "\\" in sub or ".." in parts:
        # a dotted module would be imported (its parents' __init__ run) to be found; '..' or '/' would leave it
        raise safety.UnsafeFolderError(f"{name!r} is not a package resource: write 'package:<module>/<path>' with a "
                                       "top-level module name and a path inside that package")
    spec = importlib.util.find_spec(module)  # a top-level name: found on sys.path, nothing imported
    if spec is None or not spec.submodule_search_locations:
        hint = PACKAGE_INSTALL_HINTS.get(module, f"pip install {module}")
        raise FileNotFoundError(f"model {name!r} needs the Python package {module!r}, which is not installed; run: {hint}")
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / sub if sub else root
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):  # e.g. a symlink inside the package
        raise safety.UnsafeFolderError(f"{name!r} leads outside the package {module!r} ({real})")
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

    ignore = _IGNORE_PATTERNS if trust_remote_code else _IGNORE_PATTERNS + safety.CODE_PATTERNS
    try:
        path = Path(snapshot_download(repo_id, revision=revision, token=token, ignore_patterns=ignore))
        graphs = _exported_graphs(path)
        if graphs:  # an ONNX export made by udtc: exactly the graphs it lists, never other .onnx files of the repo
            path = Path(snapshot_download(repo_id, revision=revision, token=token, allow_patterns=graphs))
        return path
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


def _exported_graphs(folder: Path) -> list[str]:
    """The ``.onnx`` files an udtc export's ``udtc_config.json`` lists under ``runtime.modules`` (plain file
    names at the top of the folder only; anything else is left for :func:`udtc.onnx_runtime.attach` to refuse)."""
    try:
        runtime = read_json(folder / CONFIG_NAME, default={}).get("runtime")
        files = [m.get("file") for m in runtime["modules"]] if isinstance(runtime, dict) else []
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return []
    return [f for f in files if isinstance(f, str) and f.endswith(".onnx") and Path(f).name == f]


def upload(folder: Path, repo_id: str, *, token: str, private: bool = True, files: list[str]) -> dict[str, Any]:
    """Create ``repo_id`` (private by default; an existing repo is reused) and upload ``files`` of
    ``folder`` (the files udtc wrote: nothing else in the folder is ever sent).

    A failed upload keeps the local folder: it warns with the folder's path and the command that
    retries, and returns ``{"repo_id", "error", "local_folder"}`` instead of raising.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload udtc fine-tuned model",
                                   allow_patterns=files)
    except Exception as err:  # noqa: BLE001 - network, auth, server: the trained model must not be lost either way
        message = f"{err.__class__.__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        logger.warning(f"upload to the Hub repo {repo_id!r} failed ({message}); the trained model is kept in "
                       f"{folder.resolve()}; retry with: hf upload {repo_id} {folder.resolve()}{' --private' if private else ''}"
                       f" --include {' '.join(files)}")
        return {"repo_id": repo_id, "error": message, "local_folder": str(folder.resolve())}
    return {"repo_id": repo_id, "url": str(url), "commit": getattr(commit, "oid", None), "private": private}
