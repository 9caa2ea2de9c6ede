"""Train the SCE model udtc ships (``udtc/models/sce-minilm``) and write its model card.

The exact command behind the shipped model::

    nohup python -m benchmarks.train_sce --steps 2400 > sce-train.log 2>&1 &

On the 2-core CPU here, one torch thread, from an empty embedding cache (data sets already
fetched, ``python -m benchmarks.datasets --fetch all``): the one-time MiniLM embedding of the ~27,500 training texts (12,564 labelled rows + 15,000 WordNet
rows) and ~18,700 label strings takes about 9 minutes (cached in ``~/.cache/udtc/sce`` for every
later run); 2,400 training steps then take about 9 minutes (527 s wall / 523 s CPU), so a run
from scratch stays under 20 minutes (1,200 steps from scratch: 14 min 50 s measured).
Ablation: ``python -m benchmarks.train_sce --no-label-attention --output <folder>``.

Training data: ``benchmarks.datasets.training_mixture()`` (every registry data set except
``HELD_OUT`` = trec6, sms_spam, vader_amazon and their families, so trec50 too, and minus any text
also found in them), plus ``--wordnet`` rows from WordNet's noun hierarchy (``benchmarks.wordnet``:
a definition or usage example whose candidate labels are one of its hypernyms and that hypernym's
siblings), which give the model thousands of label names; no label name of an evaluation data set
is among them. Progress is reported on the DEV halves of the held-out data sets
(``split(..., test_fraction=0.5, seed=0)``: the first part); their other halves are the test data
of ``python -m benchmarks.sce``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import torch

from benchmarks.datasets import HELD_OUT, load, split, training_mixture, training_sources

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "udtc" / "models" / "sce-minilm"
EVAL_SETS = (*HELD_OUT, "trec50")
COMMAND = "python -m benchmarks.train_sce"
WORDNET_ROWS = 15000


def dev_test(name: str) -> tuple:
    """The (dev, test) halves of a held-out data set."""
    return split(load(name), test_fraction=0.5, seed=0)


def capped_mixture(cap: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """``training_mixture()`` with at most ``cap`` rows per source (a seeded sample), in source order."""
    rows = training_mixture()
    if cap <= 0:
        return rows
    by_source: dict[str, list[tuple[str, str, str]]] = {}
    for row in rows:
        by_source.setdefault(row[2], []).append(row)
    rng = random.Random(f"sce-mixture:{seed}")
    return [row for part in by_source.values() for row in (rng.sample(part, cap) if len(part) > cap else part)]


def snli_rows(n: int, seed: int = 0) -> list[tuple[str, str, list[str]]]:
    """``n`` SNLI train premises as ``(premise, entailed hypothesis, [contradicting hypothesis])`` rows.

    The premise is the text and its candidate set is made of hypotheses: the entailed one is gold, the
    contradicting one of the same premise a hard negative (neutral ones are left out: they are not false).
    Premises are drawn seeded from those with both kinds of hypothesis; one of each is kept.
    """
    from benchmarks.datasets import load_snli

    if n <= 0:
        return []
    by_premise: dict[str, dict[str, list[str]]] = {}
    for premise, hypothesis, label in load_snli("train").rows():
        by_premise.setdefault(premise, {}).setdefault(label, []).append(hypothesis)
    usable = sorted(p for p, h in by_premise.items() if h.get("entailment") and h.get("contradiction"))
    rng = random.Random(f"sce-snli:{seed}")
    chosen = rng.sample(usable, min(n, len(usable)))
    return [(p, rng.choice(by_premise[p]["entailment"]), [rng.choice(by_premise[p]["contradiction"])])
            for p in chosen]


def training_rows(max_rows_per_source: int, wordnet: int, snli: int, seed: int) -> tuple[list, list]:
    """The recipe's data: capped mixture rows and candidate rows (WordNet hypernyms, then SNLI)."""
    from benchmarks.wordnet import hypernym_rows

    extra = snli_rows(snli, seed)
    if wordnet:  # the label names of the evaluation data sets stay unseen
        unseen = {x for name in EVAL_SETS for x in load(name).label_names}
        extra = hypernym_rows(wordnet, seed, exclude_labels=unseen) + extra
    return capped_mixture(max_rows_per_source), extra


def _load_name(folder: Path) -> str:
    return "package:udtc/models/sce-minilm" if folder.resolve() == DEFAULT_OUTPUT else str(folder)


def model_card(record: dict, *, load_name: str, test: dict | None = None):
    """The model card of a trained SCE from its training record (and, once measured, test results)."""
    from udtc.backends.sce.backend import SCEBackend
    from udtc.card import ModelCard

    cfg, first, last = record["config"], record["evals"][0], record["evals"][-1]
    metrics = {f"dev half of {name}: cosine -> SCE (acc / macro-F1)":
               f"{first[name]['accuracy']:.1f} / {first[name]['macro_f1']:.1f} -> "
               f"{last[name]['accuracy']:.1f} / {last[name]['macro_f1']:.1f}" for name in EVAL_SETS}
    for name, row in (test or {}).items():
        metrics[f"TEST half of {name}: cosine -> SCE (acc / macro-F1)"] = row
    metrics["how to read this"] = (
        "cosine = the same MiniLM scored by cosine similarity (App. E). trec6, sms_spam and trec50 are kinds of "
        "label set absent from training (question types, spam; their label names were also removed from the "
        "WordNet rows); vader_amazon is a new domain for the positive/negative labels of the movie and tweet data.")
    return ModelCard(
        backend="sce", base_model=cfg["embedder"], title="SCE on all-MiniLM-L6-v2 (udtc)",
        data_statistics={
            "sources (benchmarks.datasets.training_mixture)": ", ".join(training_sources()),
            "held out entirely (with their families)": ", ".join((*HELD_OUT, "trec50")),
            "rows per source (cap)": record["max_rows_per_source"],
            "WordNet rows (benchmarks.wordnet: definition or example -> hypernym vs its siblings)":
                record.get("wordnet_rows", 0),
            **record["data"],
            "retrain command": f"`{record['command']}` (then `python -m benchmarks.sce --write-card`)",
            "training time": f"{record['seconds']:.0f} s wall, {record['cpu_seconds']:.0f} s CPU ({record['machine']}), "
                             "after the one-time embedding of the training texts",
        },
        hyperparameters={k: v for k, v in cfg.items() if k != "synonyms"},
        metrics=metrics, citations=[SCEBackend.citation], load_name=load_name)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.sce_train import SCETrainConfig, mean_f1, train_sce

    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to save the model")
    parser.add_argument("--steps", type=int, default=SCETrainConfig.steps)
    parser.add_argument("--layers", type=int, nargs="+", default=[0], help="pretrained layers to start from")
    parser.add_argument("--no-label-attention", action="store_true", help="ablation: labels do not see each other")
    parser.add_argument("--no-residual", action="store_true", help="the paper's pure form, without the cosine term")
    parser.add_argument("--label-input", default="tokens", choices=["tokens", "tokens+embedding"])
    parser.add_argument("--distill-weight", type=float, default=SCETrainConfig.distill_weight)
    parser.add_argument("--distractor-rate", type=float, default=SCETrainConfig.distractor_rate)
    parser.add_argument("--synonym-rate", type=float, default=SCETrainConfig.synonym_rate)
    parser.add_argument("--learning-rate", type=float, default=SCETrainConfig.learning_rate)
    parser.add_argument("--max-rows-per-source", type=int, default=4000,
                        help="cap each data set of the mixture (seeded sample); 0 keeps every row")
    parser.add_argument("--wordnet", type=int, default=WORDNET_ROWS, metavar="N",
                        help="add N WordNet rows: a definition or usage example whose labels are its hypernym "
                             "(gold) and that hypernym's siblings (benchmarks.wordnet); 0 = without")
    parser.add_argument("--snli", type=int, default=0, metavar="N",
                        help="add N SNLI train premises whose labels are hypotheses (entailed = gold, "
                             "contradicting = hard negative); 0 = the shipped recipe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke test: 500 rows, 20 steps, no saving")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest when other jobs share the CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    cfg = SCETrainConfig(steps=20 if args.quick else args.steps, layers=args.layers,
                         label_attention=not args.no_label_attention, residual=not args.no_residual,
                         label_input=args.label_input, distill_weight=args.distill_weight,
                         distractor_rate=args.distractor_rate, synonym_rate=args.synonym_rate,
                         learning_rate=args.learning_rate, seed=args.seed, eval_every=10 if args.quick else 150)
    rows, extra = training_rows(args.max_rows_per_source, args.wordnet, args.snli, args.seed)
    if args.quick:
        rows, extra = rows[::max(1, len(rows) // 500)], extra[::max(1, len(extra) // 100)]
    eval_sets = {}
    for name in EVAL_SETS:
        dev, _ = dev_test(name)
        if args.quick:
            dev = dev.subset(range(0, len(dev), 20))
        eval_sets[name] = (dev.texts, dev.labels, dev.label_names)
    started = time.process_time()
    backend, history = train_sce(rows, cfg, candidate_rows=extra, eval_sets=eval_sets,
                                 log=lambda m: print(m, flush=True))
    history["cpu_seconds"] = round(time.process_time() - started, 1)
    first, last = history["evals"][0], history["evals"][-1]
    print(f"mean held-out dev macro-F1: cosine {mean_f1(first, HELD_OUT):.2f} -> SCE {mean_f1(last, HELD_OUT):.2f}; "
          f"{history['seconds']:.0f} s wall, {history['cpu_seconds']:.0f} s CPU", flush=True)
    if args.quick:
        return 0
    from udtc import Classifier

    record = {"command": " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])]),
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
              "max_rows_per_source": args.max_rows_per_source, "wordnet_rows": args.wordnet,
              "snli_rows": args.snli, **history,
              "loss": history["loss"][::10], "loss_every": 10}
    clf = Classifier(backend, base_model=cfg.embedder)
    clf.save_pretrained(args.output, overwrite=True, card=model_card(record, load_name=_load_name(args.output)))
    (args.output / "training.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    for path in [args.output, *args.output.iterdir()]:  # the folder may ship inside the package
        path.chmod(0o755 if path.is_dir() else 0o644)
    print(f"saved {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
