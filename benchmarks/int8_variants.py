"""Which int8 recipe keeps the top label: ONNX Runtime quantization variants of the default model.

Issue #18 asks int8 exports to agree with torch on >= 99 % of top-1 labels. udtc's ``quantize="int8"``
is ONNX Runtime's dynamic quantization (int8 weights per output channel, activations quantized per
tensor at run time). This command exports the cosine default (all-MiniLM-L6-v2) once in float32 with
``udtc.export`` and rewrites its graph with each variant:

* ``dynamic`` — udtc's int8 (``quantize_dynamic``, QInt8 weights, per channel);
* ``dynamic, FFN output in fp32`` — the same with each layer's FFN output projection (1536 -> 384,
  the GELU activations with the largest outliers) left in float32;
* ``weight-only 8-bit, fp32 compute`` — ``MatMulNBits`` (8 bits, blocks of 32, symmetric), activations
  stay float32 (``accuracy_level`` 1);
* ``weight-only 8-bit, int8 compute`` — the same with activations quantized per block (``accuracy_level`` 4).

Agreement: top-1 label equal to torch fp32 on the first ``--texts`` test texts of each unseen protocol
set (every label offered, single-label), also on the texts where torch's top probability leads the second
by >= 0.1 / 0.2 (are the flips only near-ties?), and the median over texts of the largest change of any
label's log-probability. Speed: texts/s of torch, the float32 export and each variant on
the same synthetic texts (8-200 words) and 16 labels, batch 32, alternating rounds
(``benchmarks.speed.time_cell``), median round; 1 thread. The weight-only variants need ``onnx_ir``
(``pip install onnx_ir``; the command says so and skips them without it).

    python -m benchmarks.int8_variants               # ~15 min on a 2-core machine
    python -m benchmarks.int8_variants --quick       # tiny random model, seconds (a smoke test)
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.common import synthetic_texts, write_results

COMMAND = "python -m benchmarks.int8_variants"


def variants(onnx_file: Path) -> dict[str, Any]:
    """name -> function(target path) writing that variant of ``onnx_file``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = [n.name for n in onnx.load(str(onnx_file)).graph.node if n.op_type == "MatMul"]
    ffn_out = [n for n in names if n.endswith("/output/dense/MatMul") and "/attention/" not in n]

    def dynamic(exclude: list[str]):
        return lambda target: quantize_dynamic(onnx_file, target, weight_type=QuantType.QInt8, per_channel=True,
                                               nodes_to_exclude=exclude)

    out = {"dynamic (udtc int8)": dynamic([]), "dynamic, FFN output in fp32": dynamic(ffn_out)}
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
    except ImportError:
        print("  weight-only variants skipped: they need onnx_ir (pip install onnx_ir)", flush=True)
        return out

    def weight_only(level: int):
        def write(target: Path) -> None:
            config = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=level, bits=8)
            quantizer = MatMulNBitsQuantizer(onnx.load(str(onnx_file)), algo_config=config)
            quantizer.process()
            quantizer.model.save_model_to_file(str(target), False)
        return write

    out["weight-only 8-bit, fp32 compute"] = weight_only(1)
    out["weight-only 8-bit, int8 compute"] = weight_only(4)
    return out


#: a text "has a clear lead" when torch's top probability beats its second by at least this much
LEADS = (0.1, 0.2)


def agreement(probs: list, ref: list) -> dict[str, float]:
    """Top-1 agreement of ``probs`` with ``ref`` (lists of (n, L) probability tensors, one per label set),
    overall and on the texts where ``ref`` has a clear lead, and the median over texts of the largest
    change of any label's log-probability (how far the scores move, not only the argmax)."""
    import torch

    same, lead, change = [], [], []
    for p, r in zip(probs, ref):
        p, r = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(r, dtype=torch.float64)  # (n, L) each
        same.append(p.argmax(1) == r.argmax(1))  # (n,)
        top2 = r.topk(min(2, r.shape[1]), 1).values  # (n, 2)
        lead.append(top2[:, 0] - top2[:, -1])
        change.append((p.clamp_min(1e-30).log() - r.clamp_min(1e-30).log()).abs().amax(1))
    agree, gap, moved = torch.cat(same).float(), torch.cat(lead), torch.cat(change)
    out = {"agreement": float(agree.mean()), "median_max_log_change": float(moved.median())}
    for m in LEADS:
        clear = gap >= m
        out[f"agreement_lead_{m}"] = float(agree[clear].mean()) if clear.any() else float("nan")
        out[f"share_lead_{m}"] = float(clear.float().mean())
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny random model, few texts (results *_quick)")
    parser.add_argument("--texts", type=int, default=200, help="test texts per unseen set (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    quantizer_log = logging.getLogger("onnxruntime.quantization")
    quantizer_log.setLevel(logging.WARNING)  # it logs every node it rewrites at INFO
    warnings.simplefilter("ignore")
    import torch

    import udtc
    from benchmarks import speed
    from benchmarks.common import machine
    from benchmarks.onnx_export import model_for
    from benchmarks.unseen import UNSEEN, label_sets
    from udtc import Classifier

    torch.set_num_threads(args.threads)
    started, load_start = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    sets = label_sets(UNSEEN, quick=args.quick)
    n_texts = 8 if args.quick else args.texts
    with tempfile.TemporaryDirectory(prefix="udtc-int8-") as tmp:
        path, model = model_for("cosine", Path(tmp) / "model", args.quick)
        systems: dict[str, Any] = {"torch": Classifier.from_pretrained(path, device="cpu")}
        fp32 = udtc.export(systems["torch"], Path(tmp) / "fp32")
        systems["onnx fp32"] = Classifier.from_pretrained(fp32)
        onnx_file = next(fp32.glob("*.onnx"))
        sizes = {"onnx fp32": onnx_file.stat().st_size / 1e6}
        for name, write in variants(onnx_file).items():
            folder = Path(tmp) / f"v{len(sizes)}"
            shutil.copytree(fp32, folder)
            write(folder / onnx_file.name)
            sizes[name] = (folder / onnx_file.name).stat().st_size / 1e6
            systems[name] = Classifier.from_pretrained(folder)
        probs: dict[str, list] = {name: [] for name in systems}
        for s in sets:
            for name, clf in systems.items():
                probs[name].append(clf.classify_proba(s.test.texts[:n_texts], s.test.labels, progress=False))
        ref = probs["torch"]
        agree = {name: agreement(p, ref) for name, p in probs.items()}
        texts, labels = synthetic_texts(8 if args.quick else 128, (8, 200), seed=16), speed.LABELS[:16]
        runs = {name: (lambda c: lambda t, lab: c.classify(t, lab, batch_size=32, progress=False))(clf)
                for name, clf in systems.items()}
        times = speed.time_cell(runs, texts, labels, 1 if args.quick else args.repeats, 120.0)
    rate = {name: len(texts) / statistics.median(t) for name, t in times.items()}
    rows = [{"system": name, **agree[name], "texts_per_s": rate[name], "vs_torch": rate[name] / rate["torch"],
             "onnx_mb": sizes.get(name)} for name in systems]
    meta = {"model": model, "threads": args.threads, "texts_per_set": n_texts, "agreement_texts": sum(len(r) for r in ref),
            "clear_lead_share": {str(m): agree["torch"][f"share_lead_{m}"] for m in LEADS},
            "load_start": load_start, "load_end": [round(x, 2) for x in os.getloadavg()],
            "wall_minutes": round((time.perf_counter() - started) / 60, 1), "machine": machine()}
    lines = [f"Command: `{COMMAND}{' --quick' if args.quick else ''}`; {model}; {args.threads} thread(s); load average "
             f"{load_start} at the start, {meta['load_end']} at the end; one run, {meta['wall_minutes']} min.", "",
             "| system | top-1 agreement with torch | where torch leads by >= 0.1 / 0.2 | median max abs log-prob change "
             "| texts/s | vs torch | .onnx MB |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['system']} | {r['agreement']:.1%} | {r['agreement_lead_0.1']:.1%} / {r['agreement_lead_0.2']:.1%} | "
              f"{r['median_max_log_change']:.3f} | {r['texts_per_s']:.1f} | {r['vs_torch']:.2f}x | "
              + (f"{r['onnx_mb']:.1f} |" if r["onnx_mb"] else "- |") for r in rows]
    lines += ["", "Texts where torch's top probability leads the second by >= 0.1 / 0.2: "
              + " / ".join(f"{meta['clear_lead_share'][str(m)]:.1%}" for m in LEADS) + " of the texts."]
    table = "\n".join(lines)
    write_results("int8_variants_quick" if args.quick else "int8_variants", {"command": COMMAND, **meta, "rows": rows},
                  table)
    print(table)
    return {"rows": rows}


if __name__ == "__main__":
    main()
