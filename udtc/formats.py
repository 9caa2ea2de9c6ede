"""Lines and columns of the CLI's input and output files, as each format defines them.

* ``.jsonl`` and ``.txt``: a line ends at ``\\n`` (a ``\\r`` before it is dropped) and nowhere else;
  ``str.splitlines`` would also split at U+2028, U+2029, ``\\x0c``, ``\\x85``..., which are
  ordinary characters inside a JSON string or a text line.
* ``.csv``/``.tsv``: the csv module reads the file, so quoted newlines and any character in a cell stay.
* udtc's own output columns (:data:`RESULT_COLUMNS`, optionally prefixed) never overwrite an input column.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

RESULT_COLUMNS = ("label", "labels", "score", "scores", "truncated")


def read_text(path: Path) -> str:
    """The file as text, newlines untranslated (so ``\\r`` inside a CSV cell survives); UTF-8, BOM dropped."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        return f.read()


def split_lines(raw: str) -> list[str]:
    """Lines split at ``\\n`` only (``\\r\\n`` too); no empty last line for a final newline."""
    lines = raw.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def csv_reader(raw: str, delimiter: str) -> csv.DictReader:
    return csv.DictReader(io.StringIO(raw, newline=""), delimiter=delimiter)


def result_columns(input_columns: Iterable[str], prefix: str) -> dict[str, str]:
    """udtc's column names (``{"label": prefix + "label", ...}``), refused when an input column has one."""
    names = {name: f"{prefix}{name}" for name in RESULT_COLUMNS}
    taken = sorted(set(names.values()) & set(input_columns))
    if taken:
        raise ValueError(f"the input already has column(s) {', '.join(taken)}, which udtc's output would overwrite; "
                         "rename them, or pass --prefix (e.g. --prefix udtc_) to name udtc's columns differently")
    return names
