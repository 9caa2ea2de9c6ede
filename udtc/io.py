"""Reading and writing rows of text files (.csv, .tsv, .jsonl, .txt), for the CLI and for training data.

Lines and columns are read as each format defines them:

* ``.jsonl`` and ``.txt``: a line ends at ``\\n`` (a ``\\r`` before it is dropped) and nowhere else;
  ``str.splitlines`` would also split at U+2028, U+2029, ``\\x0c``, ``\\x85``..., which are
  ordinary characters inside a JSON string or a text line.
* ``.csv``/``.tsv``: the csv module reads the file, so quoted newlines and any character in a cell stay.
* udtc's own output columns (:data:`RESULT_COLUMNS`, optionally prefixed) never overwrite an input column.

One row format for every output (``udtc classify --json``, ``--output x.jsonl``, ``--output x.csv``):
the input row's fields, then ``label`` (the chosen label or null), ``labels`` (the listed labels, best
first), ``score`` (the chosen label's probability or null), ``scores`` (every label's probability,
in the order given) and ``truncated``. JSON keeps ``labels`` a list and ``scores`` an object; a CSV
cell holds text, so there ``labels`` is joined with ``|`` and ``scores`` is the JSON of the object.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from udtc import atomic

__all__ = ["RESULT_COLUMNS", "read_rows", "result_columns", "result_row", "write_rows"]

RESULT_COLUMNS = ("label", "labels", "score", "scores", "truncated")


def read_rows(path: Path, text_column: str = "text") -> list[dict[str, Any]]:
    """Rows of a .csv/.tsv/.jsonl/.txt file as dicts; a missing text column names the columns found."""
    if not path.exists():
        raise FileNotFoundError(f"no such input file: {path}")
    try:  # newlines untranslated, so a ``\r`` inside a CSV cell survives; UTF-8, BOM dropped
        with path.open(encoding="utf-8-sig", newline="") as f:
            raw = f.read()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}); re-save it as UTF-8") from None
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [{text_column: line} for line in _split_lines(raw)]
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(raw, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        rows = list(reader)
        columns = reader.fieldnames or []
    elif suffix in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(_split_lines(raw), start=1):
            if line.strip():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path} line {n} is not valid JSON: {err.msg}") from None
                if not isinstance(item, dict):
                    raise ValueError(f"{path} line {n} is not a JSON object")
                if text_column not in item:
                    raise ValueError(f"{path} line {n} has no key {text_column!r} (keys: {', '.join(item) or 'none'}); "
                                     "give every line one, or pick the key with --text-column")
                if item[text_column] is not None and not isinstance(item[text_column], str):
                    value = item[text_column]
                    raise ValueError(f"{path} line {n}: {text_column!r} is {type(value).__name__} {value!r}, not a "
                                     f"string; quote it (\"{value}\")")
                rows.append(item)
        columns = sorted({k for row in rows for k in row})
    else:
        raise ValueError(f"unsupported input {path.name!r}: use .csv, .tsv, .jsonl or .txt")
    if rows and text_column not in columns:
        raise ValueError(f"{path} has no column {text_column!r}; columns found: {', '.join(columns) or 'none'} (use --text-column)")
    return rows


def _split_lines(raw: str) -> list[str]:
    """Lines split at ``\\n`` only (``\\r\\n`` too); no empty last line for a final newline."""
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def result_columns(input_columns: Iterable[str], prefix: str = "") -> dict[str, str]:
    """udtc's column names (``{"label": prefix + "label", ...}``), refused when an input column has one."""
    names = {name: f"{prefix}{name}" for name in RESULT_COLUMNS}
    taken = sorted(set(names.values()) & set(input_columns))
    if taken:
        raise ValueError(f"the input already has column(s) {', '.join(taken)}, which udtc's output would overwrite; "
                         "rename them, or pass --prefix (e.g. --prefix udtc_) to name udtc's columns differently")
    return names


def result_row(row: dict[str, Any], p: Any, names: dict[str, str] | None = None) -> dict[str, Any]:
    """The input ``row`` with the results of Prediction ``p`` (None: a skipped empty row) in the columns
    :data:`RESULT_COLUMNS`, renamed through ``names``; the one row format of every output."""
    names = names or {name: name for name in RESULT_COLUMNS}
    result = {"label": p.label if p else None, "labels": list(p.labels) if p else [],
              "score": p.scores[p.label] if p and p.label else None, "scores": dict(p.scores) if p else {},
              "truncated": p.truncated if p else False}
    return {**row, **{names[k]: v for k, v in result.items()}}


def write_rows(target: atomic.AtomicFile | Path, rows: list[dict[str, Any]], predictions: dict[int, Any],
               names: dict[str, str] | None = None) -> None:
    """Rows and their results (columns :data:`RESULT_COLUMNS`, renamed through ``names``) as .jsonl or CSV.

    ``target`` is an :class:`udtc.atomic.AtomicFile` (written to its temporary file; its ``commit``
    renames it into place) or a path (written through one, committed here).
    """
    if not isinstance(target, atomic.AtomicFile):
        names = names or result_columns({k for row in rows for k in row})
        out = atomic.AtomicFile(target)
        try:
            write_rows(out, rows, predictions, names)
            out.commit()
        finally:
            out.discard()
        return
    out_rows = [result_row(row, predictions.get(i), names) for i, row in enumerate(rows)]
    if target.path.suffix.lower() == ".jsonl":
        with target.open() as f:
            for n, item in enumerate(out_rows):
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
                if n == len(out_rows) // 2:
                    f.flush()
                    atomic.fault("output:half-written")
        return
    names = names or {name: name for name in RESULT_COLUMNS}
    for item in out_rows:  # a CSV cell is text: labels joined with "|", scores as JSON
        item[names["labels"]] = "|".join(item[names["labels"]])
        item[names["scores"]] = json.dumps(item[names["scores"]], ensure_ascii=False)
    fields = list(dict.fromkeys(k for item in out_rows for k in item))
    with target.open(newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(out_rows[: len(out_rows) // 2 + 1])
        f.flush()
        atomic.fault("output:half-written")
        writer.writerows(out_rows[len(out_rows) // 2 + 1 :])
