"""Data safety (README, Safety): kills at named points (``UDTC_FAULT=kill:<point>`` in a subprocess), a full
disk (``UDTC_FAULT=enospc:<point>``), files read and written as their formats define lines, results that
never overwrite input columns, uploads of only the files udtc wrote."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import udtc
from udtc import Classifier
from udtc.cli import main

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["sports", "weather"]
KILLED = 99  # udtc.atomic.fault's exit code
TRAIN = [{"text": t, "label": y} for t, y in [
    ("the team won the match", "sports"), ("a late goal in the final", "sports"), ("the coach and the players", "sports"),
    ("rain and wind all day", "weather"), ("a cold storm in the city", "weather"), ("sun and clouds tomorrow", "weather"),
    ("bread and cheese for lunch", "food"), ("a recipe with rice", "food"), ("soup in the kitchen", "food")]]


def _env(fault: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("UDTC_FAULT", None)
    if fault:
        env["UDTC_FAULT"] = fault
    return env


def _python(code: str, fault: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=_env(fault), timeout=600, cwd=ROOT)


def _cli(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "udtc.cli", *args], capture_output=True, text=True,
                          env=_env(fault), timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def model(tiny_models):
    return tiny_models("cosine")


# ---------------------------------------------------------------------------------------------- item 4: save_pretrained
@pytest.mark.parametrize("point", ["swap:before", "swap:done"])
@pytest.mark.parametrize("exchange", [True, False])
def test_overwrite_killed_at_any_point_leaves_the_old_or_the_new_model(model, tmp_path, point, exchange):
    target = Classifier.from_pretrained(model, device="cpu", scale=20.0).save_pretrained(tmp_path / "m")
    if not exchange:  # the portable path: move the old folder aside, then the new one in
        point = {"swap:before": "swap:before", "swap:done": "swap:old-moved"}[point]
    out = _python(f"""
        import udtc.atomic
        from udtc import Classifier
        if not {exchange}:
            udtc.atomic._exchange = lambda a, b: False
        Classifier.from_pretrained({str(model)!r}, device="cpu", scale=5.0).save_pretrained({str(target)!r}, overwrite=True)
        """, fault=f"kill:{point}")
    assert out.returncode == KILLED, out.stderr
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "m")
    assert leftovers and all(name.startswith(".m.") for name in leftovers)
    # the next save into the same place recovers (an old folder moved aside comes back), removes leftovers,
    # and finds a whole model there, the old one or the new one
    with pytest.raises(FileExistsError):
        Classifier.from_pretrained(model, device="cpu").save_pretrained(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    scale = json.loads((target / "udtc_config.json").read_text())["options"]["scale"]
    assert scale == (5.0 if point == "swap:done" else 20.0)
    assert Classifier.from_pretrained(target, device="cpu").classify("a goal", LABELS).label in LABELS


def test_overwrite_replaces_the_folder_and_leaves_nothing_beside_it(model, tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "old.txt").write_text("old")
    Classifier.from_pretrained(model, device="cpu").save_pretrained(target, overwrite=True)
    assert not (target / "old.txt").exists() and (target / "udtc_config.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# ---------------------------------------------------------------------------------------------- item 5: CLI output
@pytest.fixture
def rows_file(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": f"text number {i} about rain or a match"}) + "\n" for i in range(40)))
    return path


@pytest.mark.parametrize(("suffix", "point"), [(".csv", "output:half-written"), (".jsonl", "output:half-written"),
                                               (".csv", "output:before-rename")])
def test_a_killed_classify_never_leaves_output_under_the_final_name(model, rows_file, tmp_path, suffix, point):
    out = tmp_path / f"out{suffix}"
    args = ["classify", "--input", str(rows_file), "--labels", "sports,weather", "--model", str(model),
            "--output", str(out)]
    killed = _cli(args, fault=f"kill:{point}")
    assert killed.returncode == KILLED, killed.stderr
    assert not out.exists()
    assert _cli(args).returncode == 0  # the rerun needs no --overwrite
    assert len(out.read_text().strip().splitlines()) == 41 if suffix == ".csv" else 40


def test_a_terminated_classify_removes_its_partial_output(model, rows_file, tmp_path):
    """SIGTERM (kill, timeout, a scheduler) unwinds: no output, no hidden temporary file, exit 143."""
    out = tmp_path / "out.csv"
    before = set(tmp_path.iterdir())
    term = _cli(["classify", "--input", str(rows_file), "--labels", "sports,weather", "--model", str(model),
                 "--output", str(out)], fault="term:output:half-written")
    assert term.returncode == 143, term.stderr
    assert term.stderr.strip().splitlines()[-1] == "udtc: terminated"
    assert set(tmp_path.iterdir()) == before  # nothing new, dot files included


@pytest.mark.skipif(os.name != "posix", reason="process liveness is checked on POSIX only")
def test_a_new_output_sweeps_the_hidden_files_of_killed_runs_only(tmp_path):
    import socket

    from udtc.atomic import AtomicFile

    host = socket.gethostname()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has exited
    out = tmp_path / "out.csv"
    stale = tmp_path / f".out.csv.{host}-{dead}.abc123.tmp"
    running = tmp_path / f".out.csv.{host}-{os.getpid()}.def456.tmp"  # a live process (this one)
    remote = tmp_path / f".out.csv.elsewhere-{dead}.ghi789.tmp"  # another host's: its pid means nothing here
    other = tmp_path / f".other.csv.{host}-{dead}.jkl000.tmp"  # another output's
    for f in (stale, running, remote, other):
        f.write_text("rows")
    new = AtomicFile(out)
    assert not stale.exists() and running.exists() and remote.exists() and other.exists()
    assert new.tmp.name.startswith(f".out.csv.{host}-{os.getpid()}.") and new.tmp.suffix == ".tmp"
    with new.open() as f:
        f.write("a,b\n")
    new.commit()
    assert out.read_text() == "a,b\n" and not new.tmp.exists()


def test_a_killed_overwrite_keeps_the_earlier_output(model, rows_file, tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("earlier,results\n1,2\n")
    args = ["classify", "--input", str(rows_file), "--labels", "sports,weather", "--model", str(model),
            "--output", str(out), "--overwrite"]
    assert _cli(args, fault="kill:output:half-written").returncode == KILLED
    assert out.read_text() == "earlier,results\n1,2\n"


def test_a_full_disk_is_one_line_and_leaves_nothing(model, rows_file, tmp_path):
    out = tmp_path / "out.csv"
    result = _cli(["classify", "--input", str(rows_file), "--labels", "sports,weather", "--model", str(model),
                   "--output", str(out)], fault="enospc:output:half-written")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]  # (after the progress bar)
    assert last.startswith("udtc: error: no space left on device") and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_an_unwritable_output_fails_before_any_work(rows_file, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    # the model does not exist: the output location is checked first
    assert main(["classify", "--input", str(rows_file), "--labels", "a,b", "--model", str(tmp_path / "nope"),
                 "--output", str(blocker / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "nope" not in err


# ---------------------------------------------------------------------------------------------- items 6, 7: formats
def test_lines_are_read_as_the_formats_define_them(model, tmp_path, capsys):
    texts = ["a match\u2028with a line separator", "rain\x0cform feed", "goal\x85next line", "wind\u2029para"]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    txt = tmp_path / "in.txt"
    txt.write_text("\r\n".join(texts[1:]) + "\r\n", encoding="utf-8", newline="")
    with (tmp_path / "in.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([[1, "two\nlines"], [2, "a cell\u2029with U+2029"], [3, "cr\r\nlf"]])
    for path, expected in ((jsonl, texts), (txt, texts[1:]), (tmp_path / "in.csv", ["two\nlines", "a cell\u2029with U+2029", "cr\r\nlf"])):
        out = tmp_path / f"out-{path.suffix[1:]}.jsonl"
        assert main(["classify", "--input", str(path), "--labels", "sports,weather", "--model", str(model),
                     "--output", str(out)]) == 0, capsys.readouterr().err
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
        assert [r["text"] for r in rows] == expected, path.name


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_udtc_output_round_trips_as_input(model, tmp_path, suffix, capsys):
    texts = ["a match\u2028line sep", "quoted \"rain\", wind\nand a newline", "para\u2029sep", "plain goal"]
    first = tmp_path / "in.jsonl"
    first.write_text("".join(json.dumps({"text": t, "id": i}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)))
    out1, out2 = tmp_path / f"out1{suffix}", tmp_path / f"out2{suffix}"
    args = ["--labels", "sports,weather", "--model", str(model)]
    assert main(["classify", "--input", str(first), "--output", str(out1), *args]) == 0
    assert main(["classify", "--input", str(out1), "--output", str(out2), "--prefix", "again_", *args]) == 0
    capsys.readouterr()
    if suffix == ".csv":
        with out2.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        rows = [json.loads(line) for line in out2.read_text(encoding="utf-8").split("\n") if line]
    assert [r["text"] for r in rows] == texts
    assert [r["label"] for r in rows] == [r["again_label"] for r in rows]  # same model, same texts


def test_result_columns_never_overwrite_input_columns(model, tmp_path, capsys):
    path = tmp_path / "in.csv"
    path.write_text("text,label\nthe team won,gold-sports\nrain today,gold-weather\n")
    out = tmp_path / "out.csv"
    assert main(["classify", "--input", str(path), "--labels", "sports,weather", "--model", str(model),
                 "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already has column(s) label" in err and "--prefix" in err and not out.exists()
    assert main(["classify", "--input", str(path), "--labels", "sports,weather", "--model", str(model),
                 "--output", str(out), "--prefix", "udtc_"]) == 0
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["gold-sports", "gold-weather"]
    assert all(r["udtc_label"] in LABELS and json.loads(r["udtc_scores"]) for r in rows)


# ---------------------------------------------------------------------------------------------- items 4, 5, 9: finetune
def _train_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(TRAIN)
    return path


def _finetune(model, train, out, *extra, fault=None) -> subprocess.CompletedProcess:
    return _cli(["finetune", "--model", str(model), "--train", str(train), "--output", str(out), "--method", "full",
                 "--epochs", "2", "--batch-size", "4", "--learning-rate", "5e-3", "--no-progress", *extra], fault=fault)


def test_finetune_overwrite_keeps_the_earlier_output_until_the_new_one_is_complete(model, tmp_path):
    train, out = _train_file(tmp_path), tmp_path / "out"
    assert _finetune(model, train, out).returncode == 0
    before = (out / "model.safetensors").read_bytes()
    killed = _finetune(model, train, out, "--overwrite", "--seed", "1", fault="kill:finetune:final-written")
    assert killed.returncode == KILLED, killed.stderr
    assert (out / "model.safetensors").read_bytes() == before  # the earlier model is intact, and loads
    assert Classifier.from_pretrained(out, device="cpu").labels == ["sports", "weather", "food"]
    done = _finetune(model, train, out, "--seed", "1")  # the same run without --overwrite resumes and finishes
    assert done.returncode == 0, done.stderr
    assert (out / "model.safetensors").read_bytes() != before
    assert {"README.md", "config.json", "metrics.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    assert not (out / "checkpoints").exists() and not (out / ".final.tmp").exists()


@pytest.mark.parametrize("point", ["finetune:final-written", "finetune:model-in-place", "checkpoints:run-removed"])
def test_a_kill_during_the_final_cleanup_never_retrains_silently(model, tmp_path, point):
    train, out = _train_file(tmp_path), tmp_path / "out"
    killed = _finetune(model, train, out, fault=f"kill:{point}")
    assert killed.returncode == KILLED, killed.stderr
    rerun = _python(f"""
        import json, udtc
        _, m = udtc.finetune({str(model)!r}, {str(train)!r}, output_dir={str(out)!r}, method="full", epochs=2,
                             batch_size=4, learning_rate=5e-3, progress=False)
        print(json.dumps({{"resumed": m["resumed_from_epoch"], "run": m["epochs_run"]}}))
        """)
    if point != "checkpoints:run-removed":  # run.json is still there: resume from the last epoch, no training
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout.strip().splitlines()[-1]) == {"resumed": 2, "run": 2}
    else:  # run.json is gone, the model is in place: the rerun says so instead of training again
        assert rerun.returncode != 0 and "finished udtc model" in rerun.stderr, rerun.stderr
    assert Classifier.from_pretrained(out, device="cpu").labels == ["sports", "weather", "food"]


def test_finetune_on_a_full_disk_is_one_line_and_resumable(model, tmp_path):
    train, out = _train_file(tmp_path), tmp_path / "out"
    full = _finetune(model, train, out, fault="enospc:finetune:final-written")
    assert full.returncode == 2 and full.stderr.strip().splitlines()[-1].startswith("udtc: error: no space left on device")
    assert "Traceback" not in full.stderr
    assert (out / "checkpoints" / "run.json").exists()  # nothing lost: the rerun resumes
    assert _finetune(model, train, out).returncode == 0


# ---------------------------------------------------------------------------------------------- item 3: uploads
def test_finetune_push_uploads_only_the_files_udtc_wrote(model, tmp_path, monkeypatch):
    from huggingface_hub import HfApi
    from huggingface_hub.utils import filter_repo_objects

    sent: dict[str, list[str]] = {}

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, ignore_patterns=None, **kwargs):
        files = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
        sent[repo_id] = sorted(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: f"https://hf.co/{repo_id}")
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    train, out = _train_file(tmp_path), tmp_path / "out"
    killed = _finetune(model, train, out, fault="kill:finetune:final-written")
    assert killed.returncode == KILLED
    (out / "creds.json").write_text('{"token": "secret"}')  # the user's own files in the output folder
    (out / "logs").mkdir()
    (out / "logs" / ".env").write_text("HF_TOKEN=secret")
    (out / "logs" / "notes.txt").write_text("notes")
    _, metrics = udtc.finetune(model, train, output_dir=out, method="full", epochs=2, batch_size=4,
                               learning_rate=5e-3, progress=False, push_to_hub="me/tiny", hub_token="hf_x")
    assert metrics["hub"]["url"].endswith("me/tiny")
    assert {"README.md", "config.json", "metrics.json", "model.safetensors", "modules.json",
            "udtc_config.json"} <= set(sent["me/tiny"])
    assert not {"creds.json", "logs/.env", "logs/notes.txt"} & set(sent["me/tiny"])
    assert (out / "creds.json").exists() and (out / "logs" / "notes.txt").exists()  # the user's files stay
    card = (out / "README.md").read_text() + (out / "udtc_config.json").read_text()
    assert str(tmp_path) not in card
    # Classifier.push_to_hub sends the same kind of list
    Classifier.from_pretrained(out, device="cpu").push_to_hub("me/again", token="hf_x")
    assert "creds.json" not in sent["me/again"] and "udtc_config.json" in sent["me/again"]


# ---------------------------------------------------------------------------------------------- a real full disk
@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KiB tmpfs, where the OS lets this process mount one (root on Linux); else the test is skipped
    (the ENOSPC tests above simulate the same error at named points)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if not sys.platform.startswith("linux") or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tiny tmpfs here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_really_full_disk_is_one_line_in_classify_and_finetune(model, tmp_path, tiny_disk):
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"text": f"text {i} about rain " + "word " * 100}) + "\n" for i in range(300)))
    result = _cli(["classify", "--input", str(rows), "--labels", "sports,weather", "--model", str(model),
                   "--output", str(tiny_disk / "out.csv")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("udtc: error: no space left on device"), result.stderr
    assert list(tiny_disk.iterdir()) == []  # no partial output, no temporary file
    result = _finetune(model, _train_file(tmp_path), tiny_disk / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("udtc: error: no space left on device"), result.stderr
