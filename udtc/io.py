"""Reading and writing rows of files (.csv, .tsv, .jsonl, .txt, .parquet), for the CLI and for training data.

Lines and columns are read as each format defines them:

* ``.jsonl`` and ``.txt``: a line ends at ``\\n`` (a ``\\r`` before it is dropped) and nowhere else;
  ``str.splitlines`` would also split at U+2028, U+2029, ``\\x0c``, ``\\x85``..., which are
  ordinary characters inside a JSON string or a text line.
* ``.csv``/``.tsv``: the csv module reads the file, so quoted newlines and any character in a cell stay.
* ``.parquet``: pyarrow (the ``parquet`` extra) reads it in record batches; the text column must hold strings.
* udtc's own output columns (:data:`RESULT_COLUMNS`, optionally prefixed) never overwrite an input column.

Every reader streams (:func:`iter_rows`: one line, CSV record or Parquet record batch at a time) and
:class:`RowWriter` appends rows to an :class:`udtc.atomic.AtomicFile`, so ``udtc classify`` holds one
chunk of rows in memory whatever the file's size; :func:`scan` checks a whole file first (every
line parses, the text column is there) without keeping its rows.

One row format for every output (``udtc classify --json``, ``--output x.jsonl``, ``x.csv``, ``x.parquet``):
the input row's fields, then ``label`` (the chosen label or null), ``labels`` (the listed labels, best
first), ``score`` (the chosen label's probability or null), ``scores`` (every label's probability,
in the order given) and ``truncated``. JSON keeps ``labels`` a list and ``scores`` an object; a CSV
cell holds text, so there ``labels`` is joined with ``|`` and ``scores`` is the JSON of the object;
Parquet keeps ``labels`` a list of strings and ``scores`` the JSON text (as udtc's Ray and Spark columns).
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from udtc import atomic

__all__ = ["RESULT_COLUMNS", "RowWriter", "Scan", "iter_rows", "read_rows", "result_columns", "result_row", "scan",
           "write_rows"]

RESULT_COLUMNS = ("label", "labels", "score", "scores", "truncated")
INPUT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt", ".parquet")
OUTPUT_SUFFIXES = (".csv", ".jsonl", ".parquet")
_PARQUET_BATCH = 4096  # rows per Parquet record batch read


def pyarrow():
    """The pyarrow module, or an ImportError naming the extra that installs it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401 - the submodule the readers and writer use
    except ImportError:
        raise ImportError("reading or writing .parquet files needs pyarrow: pip install 'udtc[parquet]'") from None
    return pa


def read_rows(path: Path, text_column: str = "text") -> list[dict[str, Any]]:
    """Rows of a .csv/.tsv/.jsonl/.txt/.parquet file as dicts; a missing text column names the columns found."""
    return list(iter_rows(path, text_column))


def iter_rows(path: Path, text_column: str = "text") -> Iterator[dict[str, Any]]:
    """The rows of :func:`read_rows`, one at a time (a file of any size in bounded memory)."""
    if not path.exists():
        raise FileNotFoundError(f"no such input file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an input file; name a .csv, .tsv, .jsonl, .txt or .parquet file")
    suffix = path.suffix.lower()
    if suffix not in INPUT_SUFFIXES:
        raise ValueError(f"unsupported input {path.name!r}: use .csv, .tsv, .jsonl, .txt or .parquet")
    if suffix == ".parquet":
        yield from _parquet_rows(path, text_column)
        return
    # newlines untranslated (a ``\r`` inside a CSV cell survives); .jsonl/.txt lines end at ``\n`` only; BOM dropped
    with path.open(encoding="utf-8-sig", newline="" if suffix in (".csv", ".tsv") else "\n") as f:
        try:
            if suffix == ".txt":
                for line in f:
                    yield {text_column: _strip_newline(line)}
            elif suffix in (".csv", ".tsv"):
                reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
                for n, row in enumerate(reader):
                    if n == 0 and text_column not in (reader.fieldnames or []):
                        raise ValueError(f"{path} has no column {text_column!r}; columns found: "
                                         f"{', '.join(reader.fieldnames or []) or 'none'} (use --text-column)")
                    if None in row:  # csv.DictReader keeps the fields past the header's under the key None
                        raise ValueError(f"{path} line {reader.line_num} has {len(reader.fieldnames or []) + len(row[None])} "
                                         f"fields but the header has {len(reader.fieldnames or [])}; quote a field that "
                                         "holds the delimiter (\"a, b\")")
                    yield row
            else:
                for n, line in enumerate(f, start=1):
                    if line.strip():
                        yield _json_row(path, n, _strip_newline(line), text_column)
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not UTF-8 text (byte {_bad_byte(path)}); re-save it as UTF-8") from None


def _strip_newline(line: str) -> str:
    line = line[:-1] if line.endswith("\n") else line
    return line[:-1] if line.endswith("\r") else line


def _json_row(path: Path, n: int, line: str, text_column: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} line {n} is not valid JSON: {err.msg}: column {err.colno}") from None
    if not isinstance(item, dict):
        raise ValueError(f"{path} line {n} is not a JSON object")
    if text_column not in item:
        raise ValueError(f"{path} line {n} has no key {text_column!r} (keys: {', '.join(item) or 'none'}); "
                         "give every line one, or pick the key with --text-column")
    if item[text_column] is not None and not isinstance(item[text_column], str):
        value = item[text_column]
        raise ValueError(f"{path} line {n}: {text_column!r} is {type(value).__name__} {value!r}, not a "
                         f"string; quote it (\"{value}\")")
    return item


def _bad_byte(path: Path) -> int:
    """Offset of the first byte of ``path`` that is not UTF-8 (read in blocks)."""
    decoder, offset = codecs.getincrementaldecoder("utf-8")(), 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            pending = len(decoder.getstate()[0])  # bytes of a character the last block cut
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                return offset - pending + err.start
            offset += len(block)
    return offset


def _parquet_file(path: Path, text_column: str):
    pa = pyarrow()
    try:
        pf = pa.parquet.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"{path} is not a readable Parquet file ({str(err).splitlines()[0]})") from None
    schema = pf.schema_arrow
    if text_column not in schema.names:
        raise ValueError(f"{path} has no column {text_column!r}; columns found: {', '.join(schema.names) or 'none'} "
                         "(use --text-column)")
    kind = schema.field(text_column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
        raise ValueError(f"{path}: column {text_column!r} holds {kind}, not strings; pick the text column with "
                         "--text-column or cast it to string")
    return pf


def _parquet_rows(path: Path, text_column: str) -> Iterator[dict[str, Any]]:
    for batch in _parquet_file(path, text_column).iter_batches(batch_size=_PARQUET_BATCH):
        yield from batch.to_pylist()


# ---------------------------------------------------------------------------------------------- scan
@dataclass
class Scan:
    """What :func:`scan` learnt of a file: its columns (first-seen order), rows, rows without text,
    and for .jsonl the Python types of each key's values (:class:`RowWriter` types Parquet columns by them)."""

    columns: list[str]
    rows: int = 0
    empty: int = 0
    types: dict[str, set[str]] = field(default_factory=dict)
    schema: Any = None  # a Parquet input's pyarrow schema


def scan(path: Path, text_column: str = "text") -> Scan:
    """Read every row of ``path`` once, keeping none: every error :func:`iter_rows` would raise is
    raised here, before any work; a .parquet file reads only its text column."""
    if path.suffix.lower() == ".parquet" and path.exists():
        pf = _parquet_file(path, text_column)
        found = Scan(list(pf.schema_arrow.names), schema=pf.schema_arrow)
        for batch in pf.iter_batches(batch_size=_PARQUET_BATCH, columns=[text_column]):
            found.rows += batch.num_rows
            found.empty += sum(not _has_text(t) for t in batch.column(0).to_pylist())
        return found
    columns: dict[str, None] = {}
    found = Scan([])
    for row in iter_rows(path, text_column):
        found.rows += 1
        found.empty += not _has_text(row.get(text_column))
        for key, value in row.items():
            columns.setdefault(key)
            if value is not None and path.suffix.lower() in (".jsonl", ".json"):
                found.types.setdefault(key, set()).add(type(value).__name__)
    found.columns = list(columns) or ([text_column] if path.suffix.lower() == ".txt" else [])
    return found


def _has_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


# ---------------------------------------------------------------------------------------------- writing
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


class RowWriter:
    """Appends result rows to an :class:`udtc.atomic.AtomicFile` as .jsonl, .csv or .parquet (by its suffix).

    ``columns`` are the input's columns (CSV header and Parquet schema are fixed before the first row);
    :meth:`close` finishes the file, the AtomicFile's ``commit`` then renames it into place.
    """

    def __init__(self, target: atomic.AtomicFile, columns: list[str], names: dict[str, str] | None = None,
                 found: Scan | None = None):
        self.names = names or {name: name for name in RESULT_COLUMNS}
        self.kind = target.path.suffix.lower()
        self.rows = 0
        self._parquet: Any = None
        if self.kind == ".parquet":
            self._schema = _parquet_schema(columns, self.names, found)
            self._parquet = pyarrow().parquet.ParquetWriter(target.tmp, self._schema)
            self._text_columns = [f.name for f in self._schema if f.type == pyarrow().string()]
            return
        self._file = target.open(newline="" if self.kind == ".csv" else None)
        if self.kind == ".csv":
            self._csv = csv.DictWriter(self._file, fieldnames=list(dict.fromkeys([*columns, *self.names.values()])))
            self._csv.writeheader()

    def write(self, rows: list[dict[str, Any]], predictions: list[Any]) -> None:
        """``rows`` and their Predictions (None for a skipped row), in order."""
        out = [result_row(row, p, self.names) for row, p in zip(rows, predictions, strict=True)]
        half = len(out) // 2 + 1
        for part in (out[:half], out[half:]):
            self._write(part)
            if part:
                self.flush()
                atomic.fault("output:half-written")
        self.rows += len(out)

    def _write(self, out: list[dict[str, Any]]) -> None:
        if self.kind == ".jsonl":
            self._file.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in out)
        elif self.kind == ".csv":
            for item in out:  # a CSV cell is text: labels joined with "|", scores as JSON
                item[self.names["labels"]] = "|".join(item[self.names["labels"]])
                item[self.names["scores"]] = json.dumps(item[self.names["scores"]], ensure_ascii=False)
            self._csv.writerows(out)
        elif out:
            pa = pyarrow()
            for item in out:
                item[self.names["scores"]] = json.dumps(item[self.names["scores"]], ensure_ascii=False)
                for name in self._text_columns:
                    if item.get(name) is not None and not isinstance(item[name], str):
                        item[name] = json.dumps(item[name], ensure_ascii=False)
            self._parquet.write_table(pa.Table.from_pylist(out, schema=self._schema))

    def flush(self) -> None:
        if self._parquet is None:
            self._file.flush()

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        else:
            self._file.close()


def _parquet_schema(columns: list[str], names: dict[str, str], found: Scan | None):
    """Input columns keep a Parquet input's types; .jsonl keys get one type from their values (str, int, float,
    bool; anything else is written as JSON text); CSV and text columns are strings."""
    pa = pyarrow()
    by_types = {frozenset({"str"}): pa.string(), frozenset({"int"}): pa.int64(), frozenset({"float"}): pa.float64(),
                frozenset({"int", "float"}): pa.float64(), frozenset({"bool"}): pa.bool_()}
    fields = []
    for name in columns:
        if found is not None and found.schema is not None:
            fields.append(found.schema.field(name))
        else:
            types = frozenset(found.types.get(name, ()) if found else ()) or frozenset({"str"})
            fields.append(pa.field(name, by_types.get(types, pa.string())))
    result = {"label": pa.string(), "labels": pa.list_(pa.string()), "score": pa.float64(), "scores": pa.string(),
              "truncated": pa.bool_()}
    return pa.schema([*fields, *(pa.field(names[k], t) for k, t in result.items())])


def write_rows(target: atomic.AtomicFile | Path, rows: list[dict[str, Any]], predictions: dict[int, Any],
               names: dict[str, str] | None = None) -> None:
    """Rows and their results (``predictions``: row index -> Prediction) in one go, through :class:`RowWriter`.

    ``target`` is an :class:`udtc.atomic.AtomicFile` (written to its temporary file; its ``commit``
    renames it into place) or a path (written through one, committed here).
    """
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if not isinstance(target, atomic.AtomicFile):
        names = names or result_columns(columns)
        out = atomic.AtomicFile(target)
        try:
            write_rows(out, rows, predictions, names)
            out.commit()
        finally:
            out.discard()
        return
    writer = RowWriter(target, columns, names)
    writer.write(rows, [predictions.get(i) for i in range(len(rows))])
    writer.close()
