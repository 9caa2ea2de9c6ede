"""Upload a fine-tuned folder to the Hugging Face Hub (huggingface_hub: create repo, upload folder)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


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
        warnings.warn(f"upload to the Hub repo {repo_id!r} failed ({message}); the trained model is kept in "
                      f"{folder.resolve()}; retry with: hf upload {repo_id} {folder.resolve()}{' --private' if private else ''}"
                      f" --include {' '.join(files)}", stacklevel=3)
        return {"repo_id": repo_id, "error": message, "local_folder": str(folder.resolve())}
    return {"repo_id": repo_id, "url": str(url), "commit": getattr(commit, "oid", None), "private": private}
