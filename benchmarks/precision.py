"""bfloat16 against float32 on this CPU: the speed-up and what it costs in scores and accuracy.

``Classifier.from_pretrained(..., dtype="bfloat16")`` runs the encoder in bfloat16. On a CPU with
native bfloat16 (AVX512-BF16 or AMX; ``lscpu | grep bf16``) oneDNN runs its matrix products on those
units; elsewhere it emulates them and bfloat16 can be slower. For the real-weight models (the default
cosine MiniLM and the shipped SCE) the command classifies seeded samples of the data sets in both
precisions, for each torch thread count of ``--threads``, in alternating rounds (float32, bfloat16,
float32, ...; same texts, same batches, so both see the same machine load), and reports texts/s, the
median speed-up and its range over the rounds, the speed-up of the first round alone (each new
padded batch shape costs oneDNN a kernel build the first time it is seen), the load average, the
largest change of any probability, how many predicted labels change, and accuracy / macro-F1.

    python -m benchmarks.precision                  # 3 data sets x 300 rows, both models, 1 and 2 threads
    python -m benchmarks.precision --threads 1      # 1 thread only (the speed-up measured without contention)
    python -m benchmarks.precision --quick          # CI smoke test: tiny random models, 8 rows
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import write_results
from benchmarks.datasets import load, sample
from udtc.defaults import DEFAULT_MODEL, SCE_MINILM

DATASETS = ("trec6", "sms_spam", "vader_amazon")
MODELS = {"cosine MiniLM (default)": DEFAULT_MODEL, "SCE MiniLM": SCE_MINILM}


def _classify(clf, texts: list[str], labels: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    preds = clf.classify(texts, labels, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return np.array([[p.scores[x] for x in labels] for p in preds]), seconds  # (N, L)


def measure(path: str, data: dict[str, tuple[list[str], list[str], list[str]]], batch_size: int, rounds: int,
            threads: list[int]) -> dict[str, Any]:
    from udtc import Classifier
    from udtc.training.metrics import classification_metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        systems = {dt: Classifier.from_pretrained(path, device="cpu", dtype=dt) for dt in ("float32", "bfloat16")}
    out: dict[str, Any] = {}
    for name, (texts, gold, labels) in data.items():
        for clf in systems.values():
            _classify(clf, texts[:2], labels, batch_size)  # label embeddings cached; the text batch shapes are not
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            times: dict[str, list[float]] = {dt: [] for dt in systems}
            probs: dict[str, np.ndarray] = {}
            loads = []
            for _ in range(rounds):  # alternate, so both see the same machine load
                for dt, clf in systems.items():
                    probs[dt], seconds = _classify(clf, texts, labels, batch_size)
                    times[dt].append(seconds)
                loads.append(round(os.getloadavg()[0], 1))
            ratios = [a / b for a, b in zip(times["float32"], times["bfloat16"])]
            pred = {dt: p.argmax(-1) for dt, p in probs.items()}
            metrics = {dt: classification_metrics([labels[i] for i in pred[dt]], gold, labels) for dt in systems}
            out[f"{name} / {n_threads} thread{'s' if n_threads > 1 else ''}"] = {
                "n": len(texts), "threads": n_threads, "load_average": loads,
                **{f"{dt}_texts_per_s": round(len(texts) / statistics.median(times[dt]), 1) for dt in systems},
                "speedup": statistics.median(times["float32"]) / statistics.median(times["bfloat16"]),
                "speedup_min": min(ratios), "speedup_max": max(ratios), "first_round_speedup": ratios[0],
                "max_abs_prob_change": float(np.abs(probs["float32"] - probs["bfloat16"]).max()),
                "changed_predictions": int((pred["float32"] != pred["bfloat16"]).sum()),
                **{f"{dt}_{k}": round(float(metrics[dt][k]), 4) for dt in systems for k in ("accuracy", "macro_f1")},
            }
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.precision", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke test: tiny random models, 8 rows, results *_quick")
    parser.add_argument("-n", type=int, default=300, help="rows per data set (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per system and data set (median)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch thread counts to measure (default 1 2; 2 = torch's default on a 2-core machine)")
    args = parser.parse_args(argv)
    n, rounds = (8, 1) if args.quick else (args.n, args.rounds)
    data = {}
    for name in DATASETS[:1] if args.quick else DATASETS:
        full = load(name)
        s = sample(full, n, seed=0)
        data[name] = (list(s.texts), list(s.labels), list(full.label_names))
    models = dict(MODELS)
    if args.quick:  # the tiny random test checkpoints: the commands work, the numbers mean nothing
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from factories import FACTORIES

        tmp = Path(tempfile.mkdtemp(prefix="udtc-precision-"))
        models = {f"tiny {b}": str(FACTORIES[b](tmp / b)) for b in ("cosine", "sce")}
    results = {model: measure(path, data, args.batch_size, rounds, args.threads) for model, path in models.items()}

    lines = [("| model | data set / threads | n | fp32 texts/s | bf16 texts/s | bf16 speed-up (range) | first round "
              "| load average | max prob change | changed predictions | accuracy fp32 -> bf16 | macro-F1 fp32 -> bf16 |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, per in results.items():
        for name, r in per.items():
            lines.append(f"| {model} | {name} | {r['n']} | {r['float32_texts_per_s']:.0f} | "
                         f"{r['bfloat16_texts_per_s']:.0f} | {r['speedup']:.2f} ({r['speedup_min']:.2f}-"
                         f"{r['speedup_max']:.2f}) | {r['first_round_speedup']:.2f} | "
                         f"{min(r['load_average']):.1f}-{max(r['load_average']):.1f} | {r['max_abs_prob_change']:.4f} | "
                         f"{r['changed_predictions']} | {r['float32_accuracy']:.3f} -> {r['bfloat16_accuracy']:.3f} | "
                         f"{r['float32_macro_f1']:.3f} -> {r['bfloat16_macro_f1']:.3f} |")
    table = "\n".join(lines)
    print(table)
    payload = {"command": "python -m benchmarks.precision " + " ".join(argv if argv is not None else sys.argv[1:]),
               "threads": args.threads, "batch_size": args.batch_size, "rounds": rounds, "results": results}
    write_results("precision" + ("_quick" if args.quick else ""), payload, table)
    return payload


if __name__ == "__main__":
    main()
