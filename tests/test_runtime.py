"""dtype and device choice (udtc/runtime.py): ``dtype="auto"`` follows the CPU's bfloat16 flags."""

from __future__ import annotations

import pytest
import torch

from udtc import runtime


@pytest.mark.parametrize(("flags", "native"), [("fpu avx512f avx512_bf16 amx_tile", True), ("fpu amx_bf16", True),
                                                ("fpu avx2 avx512f avx512bw", False)])
def test_native_bfloat16_reads_the_cpu_flags(tmp_path, flags, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n", encoding="utf-8")
    assert runtime.native_bfloat16(str(cpuinfo)) is native
    assert runtime.native_bfloat16(str(tmp_path / "missing")) is False


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bfloat16_only_where_native(monkeypatch, native):
    monkeypatch.setattr(runtime, "native_bfloat16", lambda: native)
    assert runtime.resolve_dtype("auto", "cpu") == (torch.bfloat16 if native else None)
    assert runtime.resolve_dtype("bf16") == torch.bfloat16 and runtime.resolve_dtype(None) is None
    with pytest.raises(ValueError, match="auto"):
        runtime.resolve_dtype("float64")


def test_auto_dtype_loads_a_classifier(tiny_models, monkeypatch):
    from udtc import Classifier

    monkeypatch.setattr(runtime, "native_bfloat16", lambda: True)
    clf = Classifier.from_pretrained(str(tiny_models("cosine")), device="cpu", dtype="auto")
    assert next(clf.backend.model.parameters()).dtype == torch.bfloat16
    assert clf.classify("a match", ["sports", "weather"]).label in {"sports", "weather"}
