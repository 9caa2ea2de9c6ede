"""Reading and writing rows of text files (.csv, .tsv, .jsonl, .txt), for the CLI and for training data."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

__all__ = ["read_rows", "write_rows"]


def read_rows(path: Path, text_column: str = "text") -> list[dict[str, Any]]:
    """Rows of a .csv/.tsv/.jsonl/.txt file as dicts; a missing text column names the columns found."""
    if not path.exists():
        raise FileNotFoundError(f"no such input file: {path}")
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}); re-save it as UTF-8") from None
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [{text_column: line} for line in raw.splitlines()]
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(raw.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        rows = list(reader)
        columns = reader.fieldnames or []
    elif suffix in (".jsonl", ".json"):
        rows = []
        for n, line in enumerate(raw.splitlines(), start=1):
            if line.strip():
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path} line {n} is not valid JSON: {err.msg}") from None
                if not isinstance(item, dict):
                    raise ValueError(f"{path} line {n} is not a JSON object")
                rows.append(item)
        columns = sorted({k for row in rows for k in row})
    else:
        raise ValueError(f"unsupported input {path.name!r}: use .csv, .tsv, .jsonl or .txt")
    if rows and text_column not in columns:
        raise ValueError(f"{path} has no column {text_column!r}; columns found: {', '.join(columns) or 'none'} (use --text-column)")
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]], predictions: dict[int, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for i, row in enumerate(rows):
        p = predictions.get(i)
        out.append({**row, "label": p.label if p else None, "labels": "|".join(p.labels) if p else "",
                    "score": p.scores[p.label] if p and p.label else None,
                    "scores": json.dumps(p.scores, ensure_ascii=False) if p else "{}", "truncated": p.truncated if p else False})
    if path.suffix.lower() == ".jsonl":
        with path.open("w", encoding="utf-8") as f:
            for item in out:
                item["scores"] = json.loads(item["scores"])
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
        return
    fields = list(dict.fromkeys(k for item in out for k in item))
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(out)
