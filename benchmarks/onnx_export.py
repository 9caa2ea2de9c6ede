"""ONNX Runtime exports (``udtc export``) against the torch model and each backend's peer, in one run.

Agreement: for each backend the torch model, its fp32 ONNX export and its int8 export classify the
test halves of the unseen protocol sets (benchmarks/unseen.py: trec6, trec50, sms_spam, brown_genre,
chatterbot_topics, ovos_commands; the first ``--texts`` texts of each, every label of the set offered,
the backend's default template, single-label). Reported: top-1 agreement of each export with torch
fp32 over all texts, and macro-F1 (mean over the sets) of each.

    cosine    udtc.defaults.TUNED_MINILM, the default model (all-MiniLM-L6-v2 tuned by udtc)
    sce       udtc.defaults.SCE_MINILM
    nli       udtc.defaults.NLI_MINILM (a MiniLM-L6 NLI cross-encoder trained by udtc)
    gliclass  udtc.defaults.GLICLASS_MINILM (a GLiClass model on MiniLM-L6 trained by udtc)

every one shipped inside udtc: the models a user exports.

Speed: texts per second of udtc on torch, on the fp32 export and on the int8 export, and of the
peer (benchmarks/speed.py's: sentence-transformers encode + cosine for cosine, transformers'
zero-shot pipeline for nli, gliclass's pipeline for gliclass), each running benchmarks.speed's model of
the backend (a network of the shipped one's size and shape that the peer loads too: plain all-MiniLM-L6-v2
for cosine; a MiniLM-L6-size cross-encoder and a MiniLM-L6 GLiClass model with random heads for nli and
gliclass, whose shipped models are LoRA adapters the peers cannot load), on the same synthetic texts (8-200
words, log-uniform), labels and batch size 32; torch and ONNX Runtime on ``--threads`` threads.
Rounds alternate the systems (benchmarks.speed.time_cell: a warm-up call each, then up to
``--repeats`` rounds); the median round is reported, ratio = texts/s / peer texts/s.

    python -m benchmarks.onnx_export              # ~30-40 min on a busy 2-core machine (load 10-18)
    python -m benchmarks.onnx_export --quick      # tiny random models, seconds (a smoke test)
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.common import synthetic_texts, write_results

COMMAND = "python -m benchmarks.onnx_export"
BACKENDS = ("cosine", "sce", "nli", "gliclass")
SYSTEMS = ("torch", "onnx fp32", "onnx int8")
#: label counts of the speed cells and texts per cell (nli costs one pass per text-label pair)
SPEED_CELLS = {"cosine": [(16, 128)], "nli": [(32, 8)], "gliclass": [(1, 32), (8, 32), (64, 32)]}
#: texts per set in the agreement run (nli scores texts x labels pairs)
AGREEMENT_TEXTS = {"cosine": 200, "sce": 200, "nli": 25, "gliclass": 100}


def model_for(backend: str, folder: Path, quick: bool) -> tuple[str, str]:
    """(path, description) of the model benchmarked for ``backend``."""
    from benchmarks import speed

    if quick:
        return str(speed._factory(backend, folder).path), "tiny random test checkpoint"
    from udtc import defaults

    name = {"cosine": "TUNED_MINILM", "sce": "SCE_MINILM", "nli": "NLI_MINILM", "gliclass": "GLICLASS_MINILM"}[backend]
    return getattr(defaults, name), f"udtc.defaults.{name} (shipped, trained)" + (", the default" if backend == "cosine" else "")


def load(path: str, folder: Path) -> dict[str, Any]:
    """The torch classifier and its fp32 and int8 exports, loaded."""
    import udtc
    from udtc import Classifier

    clf = Classifier.from_pretrained(path, device="cpu")
    out = {"torch": clf}
    for system, quantize in (("onnx fp32", None), ("onnx int8", "int8")):
        started = time.perf_counter()
        exported = udtc.export(clf, folder / system.replace(" ", "-"), quantize=quantize)
        size = sum(f.stat().st_size for f in exported.glob("*.onnx")) / 1e6
        print(f"  {system}: exported in {time.perf_counter() - started:.1f} s, {size:.1f} MB of .onnx", flush=True)
        out[system] = Classifier.from_pretrained(exported)
    return out


def agreement(classifiers: dict[str, Any], sets: list, n_texts: int) -> dict[str, Any]:
    import torch

    from benchmarks.unseen import macro_f1

    preds: dict[str, list] = {name: [] for name in classifiers}
    f1: dict[str, list[float]] = {name: [] for name in classifiers}
    per_set: dict[str, dict[str, float]] = {}
    for s in sets:
        texts, gold = s.test.texts[:n_texts], s.test.gold[:n_texts]
        for name, clf in classifiers.items():
            p = torch.from_numpy(clf.classify_proba(texts, s.test.labels, progress=False)).argmax(1)
            preds[name].append(p)
            f1[name].append(macro_f1(p, gold))
        per_set[s.name] = {name: float((preds[name][-1] == preds["torch"][-1]).float().mean()) for name in classifiers}
    ref = torch.cat(preds["torch"])
    return {name: {"agreement": float((torch.cat(preds[name]) == ref).float().mean()),
                   "macro_f1": statistics.mean(f1[name]), "texts": len(ref),
                   "agreement_per_set": {k: v[name] for k, v in per_set.items()},
                   "macro_f1_per_set": dict(zip(per_set, f1[name]))} for name in classifiers}


def speed_cells(backend: str, path: str, classifiers: dict[str, Any], repeats: int, budget: float,
                quick: bool) -> list[dict[str, Any]]:
    from benchmarks import speed

    peer = speed.PEER_OF[backend]
    run_peer = speed.PEERS[peer](path, 32)
    rows = []
    for labels_n, n in SPEED_CELLS[backend]:
        n = min(n, 8) if quick else n
        texts, labels = synthetic_texts(n, (8, 200), seed=labels_n), speed.LABELS[:labels_n]
        multi = labels_n == 1  # as the peers do for one label

        def system(clf):
            return lambda t, lab: clf.classify(t, lab, multi_label=multi, batch_size=32, progress=False)

        runs = {name: system(clf) for name, clf in classifiers.items()}
        runs[peer] = run_peer
        top1 = {name: _top1(clf, texts, labels, multi) for name, clf in classifiers.items()}
        times = speed.time_cell(runs, texts, labels, repeats, budget)
        rate = {name: n / statistics.median(t) for name, t in times.items()}
        rows.append({"backend": backend, "labels": labels_n, "texts": n, "peer": peer, "rounds": len(times[peer]),
                     "texts_per_s": rate, "vs_peer": {k: rate[k] / rate[peer] for k in classifiers},
                     "top1_agreement_timed_texts": {k: float((top1[k] == top1["torch"]).mean()) for k in classifiers}})
        print(f"  {labels_n} labels: " + ", ".join(f"{k} {v:.1f}/s" for k, v in rate.items()), flush=True)
    return rows


def _top1(clf, texts, labels, multi):
    return clf.classify_proba(texts, labels, multi_label=multi, progress=False).argmax(1)


def render(models: dict[str, str], acc: dict[str, dict], rows: list[dict], meta: dict) -> str:
    lines = [f"Command: `{COMMAND}{' --quick' if meta['quick'] else ''}`; machine: {meta['machine']}; torch and ONNX "
             f"Runtime on {meta['threads']} thread(s); load average {meta['load_start']} at the start, "
             f"{meta['load_end']} at the end; one run, {meta['wall_minutes']:.0f} min.", "",
             "Agreement with torch fp32 (top-1) and macro-F1 (mean over the sets), unseen protocol test halves:", "",
             "| backend | model | texts | int8 agreement | fp32 agreement | macro-F1 torch | macro-F1 int8 | delta (points) |",
             "|---|---|---|---|---|---|---|---|"]
    for backend, r in acc.items():
        delta = r["onnx int8"]["macro_f1"] - r["torch"]["macro_f1"]
        lines.append(f"| {backend} | {models[backend]} | {r['torch']['texts']} | {r['onnx int8']['agreement']:.1%} | "
                     f"{r['onnx fp32']['agreement']:.1%} | {r['torch']['macro_f1']:.1f} | "
                     f"{r['onnx int8']['macro_f1']:.1f} | {delta:+.2f} |")
    lines += ["", "Speed (texts/s, median of alternating rounds) and ratio to the peer; int8 top-1 agreement with torch on "
              "the timed texts and, in brackets, the shipped model's on the sets above:", "",
              "| backend | model timed (udtc and its peer) | labels | texts | rounds | peer | peer texts/s | torch | onnx fp32 | "
              "onnx int8 | int8 agreement |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rate, ratio = r["texts_per_s"], r["vs_peer"]
        cell = lambda k: f"{rate[k]:.1f} ({ratio[k]:.2f}x)"  # noqa: E731
        lines.append(f"| {r['backend']} | {r['model']} | {r['labels']} | {r['texts']} | {r['rounds']} | {r['peer']} | "
                     f"{rate[r['peer']]:.1f} | {cell('torch')} | {cell('onnx fp32')} | {cell('onnx int8')} | "
                     f"{r['top1_agreement_timed_texts']['onnx int8']:.0%} "
                     f"({acc[r['backend']]['onnx int8']['agreement']:.1%}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny random models, few texts (results *_quick)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per cell at most (default 3)")
    parser.add_argument("--cell-seconds", type=float, default=60.0, help="stop adding rounds after this long (default 60)")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1: steadier)")
    parser.add_argument("--no-speed", action="store_true", help="agreement only")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's advice on the root logger
    warnings.simplefilter("ignore")
    import torch

    from benchmarks.common import machine
    from benchmarks.unseen import UNSEEN, label_sets

    torch.set_num_threads(args.threads)
    load_start, started = [round(x, 2) for x in os.getloadavg()], time.perf_counter()
    sets = label_sets(UNSEEN, quick=args.quick)
    models, acc, rows = {}, {}, []
    with tempfile.TemporaryDirectory(prefix="udtc-onnx-") as tmp:
        for backend in args.backends:
            path, models[backend] = model_for(backend, Path(tmp) / backend, args.quick)
            print(f"{backend}: {models[backend]}", flush=True)
            classifiers = load(path, Path(tmp) / f"{backend}-export")
            acc[backend] = agreement(classifiers, sets, 8 if args.quick else AGREEMENT_TEXTS[backend])
            print("  agreement: " + ", ".join(f"{k} {v['agreement']:.3f} (F1 {v['macro_f1']:.3f})"
                                               for k, v in acc[backend].items()), flush=True)
            if not args.no_speed and backend in SPEED_CELLS:
                from benchmarks import speed

                timed = speed.subject(backend, Path(tmp) / f"{backend}-speed", quick=args.quick)  # a model the peer loads
                if timed.path != path:
                    classifiers = load(timed.path, Path(tmp) / f"{backend}-speed-export")
                cells = speed_cells(backend, timed.path, classifiers, 1 if args.quick else args.repeats, args.cell_seconds,
                                    args.quick)
                rows += [dict(r, model=timed.model) for r in cells]
    meta = {"quick": args.quick, "threads": args.threads, "machine": "2-core shared CPU" if os.cpu_count() == 2
            else f"{os.cpu_count()} CPUs", "load_start": load_start, "load_end": [round(x, 2) for x in os.getloadavg()],
            "wall_minutes": (time.perf_counter() - started) / 60, "machine_info": machine()}
    table = render(models, acc, rows, meta)
    write_results("onnx_export_quick" if args.quick else "onnx_export",
                  {"command": COMMAND, **meta, "models": models, "agreement": acc, "speed": rows}, table)
    print(table)
    return {"agreement": acc, "speed": rows}


if __name__ == "__main__":
    main()
