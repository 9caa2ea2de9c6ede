"""The udtc command line: one-line errors, files in and out."""

from __future__ import annotations

import csv
import json

import pytest

from udtc import __version__
from udtc.cli import main


@pytest.fixture(scope="module")
def model(tiny_models):
    return str(tiny_models("cosine"))


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"udtc {__version__}"


def test_classify_texts(model, capsys):
    assert main(["classify", "the team won the match", "rain in the city", "--labels", "sports,weather", "--model", model]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[0] in {"sports", "weather"}


def test_classify_json_multi_label_top_k(model, capsys):
    args = ["classify", "the match", "--labels", "sports,weather,food", "--model", model, "--json", "--multi-label",
            "--threshold", "0", "--top-k", "2"]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["labels"]) == 2 and data["label"] == data["labels"][0] and list(data["scores"]) == ["sports", "weather", "food"]


def test_label_flag_allows_commas(model, capsys):
    assert main(["classify", "the match", "--label", "sports, games", "--label", "food", "--model", model, "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["scores"]) == ["sports, games", "food"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".txt", ".tsv"])
def test_input_file_to_output_file(model, tmp_path, suffix, capsys):
    texts = ["the team won the match", "", "rain and wind"]
    src = tmp_path / f"in{suffix}"
    if suffix == ".csv":
        src.write_text("id,body\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
    elif suffix == ".tsv":
        src.write_text("id\tbody\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
    elif suffix == ".jsonl":
        src.write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    else:
        src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    for out_suffix in (".csv", ".jsonl"):
        out = tmp_path / f"out{suffix}{out_suffix}"
        assert main(["classify", "--input", str(src), "--text-column", "body", "--labels", "sports,weather",
                     "--model", model, "--output", str(out)]) == 0
        if out_suffix == ".csv":
            rows = list(csv.DictReader(out.open(encoding="utf-8")))
        else:
            rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == 3, "every input row is kept, empty ones too"
        assert rows[0]["label"] in {"sports", "weather"} and not rows[1]["label"]
        assert rows[0]["body"] == texts[0]
    assert "skipped 1 empty row" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["classify", "--labels", "a,b"], "nothing to classify"),
        (["classify", "hello"], "no labels"),
        (["classify", "hello", "--labels", "a,b", "--model", "/nonexistent/model"], "no such model folder"),
        (["classify", "--input", "/nonexistent.csv", "--labels", "a,b"], "no such input file"),
        (["classify", "hello", "--labels", "a,b", "--threshold", "2", "--multi-label"], "threshold"),
    ],
)
def test_errors_print_one_line_and_exit_non_zero(model, capsys, args, message):
    if "--model" not in args:
        args = [*args, "--model", model]
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("udtc: error:") and message in err


def test_missing_column_non_utf8_and_existing_output(model, tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("id,content\n1,hello\n", encoding="utf-8")
    assert main(["classify", "--input", str(src), "--labels", "a,b", "--model", model]) != 0
    assert "columns found: id, content" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    assert main(["classify", "--input", str(bad), "--labels", "a,b", "--model", model]) != 0
    assert "not UTF-8" in capsys.readouterr().err
    out = tmp_path / "exists.csv"
    out.write_text("precious")
    assert main(["classify", "hello", "--labels", "a,b", "--model", model, "--output", str(out)]) != 0
    assert out.read_text() == "precious" and "--overwrite" in capsys.readouterr().err


def test_version_help_and_bad_arguments_load_no_torch(tmp_path):
    # start-up: `udtc --version` / `--help` and every argument check run before torch (or a model) loads
    import subprocess
    import sys

    script = f"""
import sys
from udtc.cli import main
for args in (["--version"], ["--help"], ["classify", "--help"], ["classify", "x", "--labels", "a,b", "--threshold", "2"],
             ["classify", "x", "--labels", "a,b", "--top-k", "0"], ["classify", "x", "--labels", "a,b", "--batch-size", "0"],
             ["classify", "--input", {str(tmp_path / "missing.csv")!r}, "--labels", "a,b"], ["classify", "x", "--labels", "a,a"],
             ["classify", "x", "--labels", "a,b", "--dtype", "float64"]):
    try:
        code = main(args)
    except SystemExit as exit:
        code = exit.code
    assert code == (0 if "--version" in args or "--help" in args else 2), (args, code)
assert "torch" not in sys.modules and "transformers" not in sys.modules, "a torch import before any model loads"
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "no such input file" in out.stderr and "--threshold must be" in out.stderr and "invalid choice" in out.stderr


def test_dtype_flag(model, capsys):
    args = ["classify", "the team won the match", "--labels", "sports,weather", "--model", model, "--json"]
    assert main(args + ["--dtype", "bfloat16"]) == 0
    low = json.loads(capsys.readouterr().out)["scores"]
    assert main(args) == 0
    full = json.loads(capsys.readouterr().out)["scores"]
    assert low.keys() == full.keys() and all(abs(low[k] - full[k]) < 0.05 for k in low)


def test_folders_named_like_files_are_one_line_errors(tmp_path, capsys):
    from udtc.cli import main as cli_main

    (tmp_path / "d.csv").mkdir()
    (tmp_path / "in.csv").write_text("text\nhello\n", encoding="utf-8")
    assert cli_main(["classify", "--input", str(tmp_path / "d.csv"), "--labels", "a,b"]) == 2
    assert "is a folder, not an input file" in capsys.readouterr().err
    assert cli_main(["classify", "--input", str(tmp_path / "in.csv"), "--labels", "a,b", "--output",
                     str(tmp_path / "d.csv"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "--output" in err and "is a folder" in err and err.count("\n") == 1


def test_flags_that_would_do_nothing_are_refused(tmp_path, capsys):
    from udtc.cli import main as cli_main

    for argv, message in (
        (["classify", "hi", "--labels", "a,b", "--overwrite"], "--overwrite replaces an --output file"),
        (["classify", "hi", "--labels", "a,b", "--text-column", "body"], "--text-column names a column of --input"),
        (["calibrate", "--model", "x", "--dev", "d.csv", "--output", str(tmp_path / "k"), "--labels", ",,"],
         "--labels ',,' names no label"),
    ):
        assert cli_main(argv) == 2
        assert message in capsys.readouterr().err


def test_a_csv_row_with_more_fields_than_its_header_is_named(tmp_path, capsys):
    from udtc.cli import main as cli_main

    (tmp_path / "in.csv").write_text("text,other\nhello,x\nworld,x,y,z\n", encoding="utf-8")
    assert cli_main(["classify", "--input", str(tmp_path / "in.csv"), "--labels", "a,b", "--model", "nope"]) == 2
    assert "line 3 has 4 fields but the header has 2" in capsys.readouterr().err
