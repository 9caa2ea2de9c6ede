"""Train an NLI cross-encoder from a plain encoder with ``udtc.finetune(..., hypothesis_column=...)``.

all-MiniLM-L6-v2 (a sentence-embedding model, no NLI head) gets a new seeded 3-way head
(entailment / neutral / contradiction) and is trained in full on a stratified sample of the SNLI
1.0 train subset (``benchmarks.datasets.load_snli``), one epoch. Reported:

- SNLI test accuracy (a stratified sample of the test set; chance is 1/3);
- zero-shot macro-F1 of the trained model on the nli backend (label hypotheses "This example is
  {label}.") on TREC-6 and SMS spam, next to the cosine backend on the same all-MiniLM-L6-v2
  weights (udtc's zero-shot baseline), on the same test texts (the test part of the seeded
  80/20 split that ``benchmarks.few_shot`` uses).

    python -m benchmarks.nli_train --threads 1          # default sizes (about 15 min on 1 thread)
    python -m benchmarks.nli_train --quick              # CI smoke test: tiny random encoder, a few rows

The trained model goes to ``~/.cache/udtc/benchmarks/nli-minilm-snli`` (``--output``), never
into the repository.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import torch

from benchmarks.common import write_results
from benchmarks.datasets import load, load_snli, sample, split

ZERO_SHOT = {"trec6": "TREC-6", "sms_spam": "SMS spam"}
DEFAULT_OUTPUT = Path("~/.cache/udtc/benchmarks/nli-minilm-snli")
#: fixed before looking at test data: one epoch, AdamW with linear decay after 10 % warmup
RECIPE = {"method": "full", "epochs": 1, "learning_rate": 1e-4, "batch_size": 32, "warmup_ratio": 0.1}


def tiny_encoder(folder: Path, tokenizer_from: Path) -> Path:
    """A random 2-layer BERT with the MiniLM tokenizer (the --quick model)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def snli_accuracy(clf, data, batch_size: int = 64) -> dict:
    """Accuracy of the NLI classes on premise/hypothesis pairs, overall and per gold class."""
    logits = clf.backend.pair_logits(data.premises, data.hypotheses, batch_size=batch_size)  # (N, C)
    classes = clf.backend.classes
    pred = [classes[i] for i in logits.argmax(-1).tolist()]
    per_class = {c: sum(p == g for p, g in zip(pred, data.labels) if g == c) / max(1, data.labels.count(c))
                 for c in data.label_names}
    return {"accuracy": sum(p == g for p, g in zip(pred, data.labels)) / len(data), "per_class": per_class,
            "examples": len(data)}


def zero_shot(clf, name: str, test_n: int) -> dict:
    from udtc.training.metrics import classification_metrics

    data = load(name)
    _, test = split(data, test_fraction=0.2, seed=0)
    test = sample(test, min(test_n, len(test)), seed=0)
    labels = list(data.label_names)
    started = time.perf_counter()
    pred = [p.label for p in clf.classify(test.texts, labels, batch_size=64, progress=False)]
    return {**classification_metrics(pred, test.labels, labels), "examples": len(test),
            "seconds": round(time.perf_counter() - started, 1)}


def table(result: dict) -> str:
    snli = result["snli_test"]
    per_class = ", ".join(f"{c} {v:.3f}" for c, v in snli["per_class"].items())
    lines = [f"SNLI test accuracy ({snli['examples']} pairs, chance 0.333): **{snli['accuracy']:.3f}** ({per_class})",
             (f"Training: {result['train_pairs']} SNLI pairs, {result['recipe']['epochs']} epoch(s), "
              f"{result['train_wall_s']:.0f} s wall, {result['train_cpu_s']:.0f} s CPU, final train loss "
              f"{result['train_loss']:.3f}"), "",
             ("| data set | labels | texts | nli (trained here) macro-F1 | cosine macro-F1 | ratio | nli accuracy | "
              "cosine accuracy |"), "|---|---|---|---|---|---|---|---|"]
    for name, row in result["zero_shot"].items():
        nli, cos = row["nli"], row["cosine"]
        ratio = nli["macro_f1"] / cos["macro_f1"] if cos["macro_f1"] else float("nan")
        lines.append(f"| {ZERO_SHOT[name]} | {row['labels']} | {nli['examples']} | {nli['macro_f1']:.3f} | "
                     f"{cos['macro_f1']:.3f} | {ratio:.2f} | {nli['accuracy']:.3f} | {cos['accuracy']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import udtc
    from benchmarks import models
    from udtc import Classifier

    parser = argparse.ArgumentParser(prog="python -m benchmarks.nli_train", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny random encoder, 60 pairs, 20 texts")
    parser.add_argument("--train-n", type=int, default=9600, help="SNLI train pairs (stratified sample)")
    parser.add_argument("--test-n", type=int, default=500, help="SNLI test pairs (stratified sample)")
    parser.add_argument("--zero-shot-n", type=int, default=300, help="test texts per zero-shot data set")
    parser.add_argument("--learning-rate", type=float, default=RECIPE["learning_rate"])
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the trained model goes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = {**RECIPE, "learning_rate": args.learning_rate, "epochs": args.epochs}
    minilm = models.locate("all-minilm-l6-v2") or models.fetch("all-minilm-l6-v2")
    tmp = tempfile.TemporaryDirectory()
    encoder, output = minilm, args.output.expanduser()
    if args.quick:
        args.train_n, args.test_n, args.zero_shot_n = 60, 30, 20
        encoder, output = tiny_encoder(Path(tmp.name) / "encoder", minilm), Path(tmp.name) / "model"
    started = time.perf_counter()

    train = sample(load_snli("train"), args.train_n, seed=0)
    test = sample(load_snli("test"), args.test_n, seed=0)
    rows = [{"premise": p, "hypothesis": h, "label": y} for p, h, y in train.rows()]
    print(f"training on {len(rows)} SNLI pairs from {encoder}", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wall, cpu = time.perf_counter(), time.process_time()
        _, metrics = udtc.finetune(str(encoder), rows, text_column="premise", hypothesis_column="hypothesis",
                                     output_dir=output, overwrite=True, progress=not args.quick, device="cpu", **recipe)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"trained in {wall:.0f} s wall, {cpu:.0f} s CPU; saved to {output}", flush=True)
    reloaded = Classifier.from_pretrained(output, device="cpu")  # what users load: a plain NLI folder
    result = {"encoder": str(encoder), "output": str(output), "recipe": recipe, "train_pairs": len(rows),
              "train_label_counts": train.label_counts(), "train_loss": metrics["train_loss"],
              "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1),
              "snli_test": snli_accuracy(reloaded, test), "zero_shot": {}}
    print(f"SNLI test accuracy {result['snli_test']['accuracy']:.3f}", flush=True)
    cosine = Classifier.from_pretrained(str(minilm), backend="cosine", device="cpu")
    for name in ZERO_SHOT:
        nli = zero_shot(reloaded, name, args.zero_shot_n)
        cos = zero_shot(cosine, name, args.zero_shot_n)
        result["zero_shot"][name] = {"labels": len(load(name).label_names), "nli": nli, "cosine": cos}
        print(f"{name}: nli macro-F1 {nli['macro_f1']:.3f}, cosine {cos['macro_f1']:.3f}", flush=True)
    result["total_s"] = round(time.perf_counter() - started, 1)
    text = table(result)
    print(text)
    path = write_results("nli_train" + ("_quick" if args.quick else ""),
                         {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                          "threads": torch.get_num_threads(), "result": result}, text)
    print(f"wrote {path}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
