"""Every script in examples/ runs (on the real default model)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.integration
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    if script.name == "quickstart.py":
        assert [line.split()[0] for line in out.stdout.splitlines()] == ["sports", "politics", "cooking", "technology"]
    if script.name == "multi_label_and_descriptions.py":  # issue #17: the stadium/council text is politics
        assert "politics" in out.stdout.splitlines()[0], out.stdout
    if script.name == "classify_file.py":
        rows = list(csv.DictReader((tmp_path / "headlines.classified.csv").open()))
        assert len(rows) == 6 and rows[0]["label"] == "sports"
