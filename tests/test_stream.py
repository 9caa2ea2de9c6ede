"""``udtc classify --input`` streams: Parquet in and out, chunked reading and writing that gives the
output of one pass, kills mid-run that leave no output, bounded chunks, a clear message without pyarrow."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from udtc.backends.base import BATCH_TOLERANCE
from udtc.cli import main
from udtc.io import iter_rows, read_rows, scan

pa = pytest.importorskip("pyarrow")  # the parquet extra (in udtc[test])
import pyarrow.parquet as pq  # noqa: E402

from test_data_safety import KILLED, _cli  # noqa: E402 - the subprocess runner with UDTC_FAULT

LABELS = "sports,weather,food"
TEXTS = ["the team won the match", "rain and wind all day", "bread and cheese", "a late goal in the final",
         "a cold storm in the city", "soup in the kitchen", "the coach and the players", "sun and clouds"]


@pytest.fixture(scope="module")
def model(tiny_models):
    return str(tiny_models("cosine"))


def _jsonl(path, n: int):
    """``n`` rows: texts of different lengths (padding differs between batches), an empty one, extra keys."""
    rows = [{"id": i, "text": "" if i == 5 else f"{TEXTS[i % len(TEXTS)]} {'and more ' * (i % 7)}".strip(),
             "score_hint": i / 2, "ok": i % 2 == 0} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def _classify(model, src, out, *extra) -> None:
    assert main(["classify", "--input", str(src), "--labels", LABELS, "--model", model, "--output", str(out),
                 *extra]) == 0


def _read(path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_chunked_output_is_the_one_pass_output(model, tmp_path, suffix, capsys):
    """A file of 23 rows read 4 rows at a time: byte for byte the output of one chunk (batch size 1, so
    each text's scores do not depend on its batch), and within the batching tolerance at batch size 32."""
    src = tmp_path / "in.jsonl"
    _jsonl(src, 23)
    one, chunked = tmp_path / f"one{suffix}", tmp_path / f"chunked{suffix}"
    _classify(model, src, one, "--batch-size", "1", "--chunk-size", "1000")
    _classify(model, src, chunked, "--batch-size", "1", "--chunk-size", "4")
    if suffix == ".parquet":  # the file embeds its writer's row-group layout; the table is what must match
        assert pq.read_table(one).equals(pq.read_table(chunked))
    else:
        assert one.read_bytes() == chunked.read_bytes()
    rows = _read(one)
    assert len(rows) == 23 and [str(r["id"]) for r in rows] == [str(i) for i in range(23)]
    assert not rows[5]["label"] and all(r["label"] in LABELS.split(",") for i, r in enumerate(rows) if i != 5)
    _classify(model, src, one, "--chunk-size", "1000", "--overwrite")
    _classify(model, src, chunked, "--chunk-size", "4", "--overwrite")
    a, b = _read(one), _read(chunked)
    for x, y in zip(a, b, strict=True):
        sx, sy = (json.loads(r["scores"]) if isinstance(r["scores"], str) else r["scores"] for r in (x, y))
        assert list(sx) == list(sy) and max((abs(sx[k] - sy[k]) for k in sx), default=0) <= BATCH_TOLERANCE
    assert "skipped 1 empty row" in capsys.readouterr().err


def test_parquet_round_trip(model, tmp_path, capsys):
    """Parquet in, Parquet out: input columns keep their types, results are typed columns; the output reads
    back as input (with --prefix) and gives the same labels."""
    src = tmp_path / "in.parquet"
    table = pa.table({"id": pa.array(range(6), pa.int32()), "body": TEXTS[:4] + [None, "rain again"],
                      "tags": [["a"], [], ["b", "c"], None, ["d"], []]})
    pq.write_table(table, src, row_group_size=2)
    out, again = tmp_path / "out.parquet", tmp_path / "again.parquet"
    _classify(model, src, out, "--text-column", "body", "--chunk-size", "4")
    got = pq.read_table(out)
    assert got.schema.field("id").type == pa.int32() and got.schema.field("tags").type == pa.list_(pa.string())
    assert got.schema.field("labels").type == pa.list_(pa.string()) and got.schema.field("score").type == pa.float64()
    rows = got.to_pylist()
    assert [r["body"] for r in rows] == table.column("body").to_pylist() and rows[2]["tags"] == ["b", "c"]
    assert rows[4]["label"] is None and rows[4]["labels"] == [] and rows[4]["scores"] == "{}"
    from udtc import Classifier

    want = Classifier.from_pretrained(model).classify(TEXTS[:4] + ["rain again"], LABELS.split(","))
    kept = [r for r in rows if r["label"] is not None]
    assert [r["label"] for r in kept] == [p.label for p in want]
    for r, p in zip(kept, want):
        assert r["labels"] == p.labels and list(json.loads(r["scores"])) == LABELS.split(",")
        assert r["score"] == pytest.approx(p.scores[p.label], abs=BATCH_TOLERANCE)
    _classify(model, out, again, "--text-column", "body", "--prefix", "again_")
    assert [r["again_label"] for r in pq.read_table(again).to_pylist()] == [r["label"] for r in rows]
    as_csv = tmp_path / "out.csv"  # and Parquet in, CSV out
    _classify(model, src, as_csv, "--text-column", "body")
    assert [r["label"] for r in _read(as_csv)] == [r["label"] or "" for r in rows]
    capsys.readouterr()


def test_jsonl_to_parquet_types_columns_by_their_values(model, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a goal", "n": 1, "x": 1.5, "meta": {"k": 1}}\n{"text": "rain", "n": 2, "x": 2, "meta": "s"}\n'
                   '{"text": "soup", "extra": true}\n', encoding="utf-8")
    out = tmp_path / "out.parquet"
    _classify(model, src, out)
    got = pq.read_table(out)
    assert [got.schema.field(k).type for k in ("n", "x", "meta", "extra")] == [pa.int64(), pa.float64(), pa.string(),
                                                                            pa.bool_()]
    assert got.column("meta").to_pylist() == ['{"k": 1}', "s", None]
    capsys.readouterr()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])  # (.jsonl is written as .csv is: text lines)
def test_a_run_killed_between_chunks_leaves_no_output(model, tmp_path, suffix):
    src = tmp_path / "in.jsonl"
    _jsonl(src, 30)
    out = tmp_path / f"out{suffix}"
    args = ["classify", "--input", str(src), "--labels", LABELS, "--model", model, "--output", str(out),
            "--chunk-size", "10"]
    killed = _cli(args, fault="kill:output:chunk-written")  # after the first 10 rows are on disk
    assert killed.returncode == KILLED, killed.stderr
    assert not out.exists()
    temp = [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.")]
    assert len(temp) == 1 and temp[0].stat().st_size > 0  # the rows written so far were only in the hidden file
    full = _cli(args, fault="enospc:output:chunk-written")
    assert full.returncode == 2 and full.stderr.strip().splitlines()[-1].startswith("udtc: error: no space left")
    # the killed run's hidden file was swept by the next run (its process is gone), the failed run's own removed
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert _cli(args).returncode == 0 and len(_read(out)) == 30


def test_memory_holds_one_chunk(model, tmp_path, monkeypatch, capsys):
    """Rows are read lazily and classified --chunk-size at a time; nothing keeps the whole file."""
    src = tmp_path / "in.txt"
    src.write_text("".join(f"{TEXTS[i % 8]}\n" for i in range(25)), encoding="utf-8")
    rows = iter_rows(src)
    assert next(rows) == {"text": TEXTS[0]}  # a generator: one line at a time
    found = scan(src)
    assert (found.columns, found.rows, found.empty) == (["text"], 25, 0)
    from udtc.classifier import Classifier

    sizes = []
    classify = Classifier.classify
    monkeypatch.setattr(Classifier, "classify", lambda self, texts, *a, **k: sizes.append(len(texts)) or classify(self, texts, *a, **k))
    assert main(["classify", "--input", str(src), "--labels", LABELS, "--model", model, "--json", "--chunk-size", "10"]) == 0
    assert sizes == [10, 10, 5]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in printed] == [TEXTS[i % 8] for i in range(25)]


def test_errors_anywhere_in_the_file_come_before_the_model_loads(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"text": "fine"}) + "\n" for _ in range(50)) + "{broken\n", encoding="utf-8")
    # the model does not exist: the input is checked first, to its last line
    assert main(["classify", "--input", str(src), "--labels", "a,b", "--model", str(tmp_path / "nope")]) == 2
    assert "line 51 is not valid JSON: Expecting property name enclosed in double quotes: column 2" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text\n" + b"ok\n" * 2000 + b"caf\xe9\n")
    with pytest.raises(ValueError, match=r"not UTF-8 text \(byte 6008\)"):
        read_rows(bad)
    assert main(["classify", "--input", str(tmp_path / "in.parquet"), "--labels", "a,b"]) == 2
    assert "no such input file" in capsys.readouterr().err
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    assert main(["classify", "--input", str(tmp_path / "ints.parquet"), "--labels", "a,b"]) == 2
    assert "holds int64, not strings" in capsys.readouterr().err


def test_without_pyarrow_parquet_names_the_extra(model, tmp_path, monkeypatch, capsys):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": ["a goal"]}), src)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    for args in (["--input", str(src)], ["a goal", "--output", str(tmp_path / "out.parquet")]):
        assert main(["classify", *args, "--labels", LABELS, "--model", model]) == 2
        err = capsys.readouterr().err.strip()
        assert err == "udtc: error: reading or writing .parquet files needs pyarrow: pip install 'udtc[parquet]'"
    assert not (tmp_path / "out.parquet").exists()
    assert subprocess.run([sys.executable, "-c", "import udtc.cli, udtc.io, sys; sys.exit('pyarrow' in sys.modules)"],
                          capture_output=True).returncode == 0  # never imported unless a file needs it
