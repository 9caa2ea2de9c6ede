"""SCE vs cosine on the same embedder (all-MiniLM-L6-v2), on data sets held out of SCE training.

1. Accuracy and macro-F1 on the TEST halves (``split(..., 0.5, seed=0)[1]``) of the held-out data
   sets (trec6, sms_spam, vader_amazon; trec50 shares trec6's texts and is held out with it) for:
   cosine (the default classifier), the shipped SCE (``udtc/models/sce-minilm``) and the ablation
   without label self-attention (labels attend only to the prompt and themselves), trained here
   with the shipped model's recipe unless ``--ablation`` names a folder.
2. Throughput (texts/s) against the number of labels, 1 to 128: the text is embedded once, the
   labels only pass the small encoder, so the curve is nearly flat.

External embeddings are cached (``benchmarks.sce_train.embed_cached``); a sample of every data
set is also classified end to end through ``Classifier.classify`` to check the cached path agrees.

    python -m benchmarks.sce            # default (< 30 min on a 2-core CPU, first run included)
    python -m benchmarks.sce --quick    # CI smoke test (tiny subsets, no ablation unless --ablation)
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import best_of, synthetic_texts, write_results
from benchmarks.datasets import HELD_OUT
from benchmarks.train_sce import DEFAULT_OUTPUT, EVAL_SETS, dev_test, training_rows

LABEL_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128)
UNSEEN_LABELS = ("trec6", "sms_spam", "trec50")  # label sets of kinds absent from training, names never shown
MEAN_HELD_OUT = "mean (trec6, sms_spam, vader_amazon)"
MEAN_UNSEEN = "mean of unseen label sets (trec6, sms_spam, trec50)"


def evaluate(backend, texts: list[str], gold: list[str], names: list[str], cache: Path) -> dict[str, float]:
    from benchmarks.sce_train import classification_metrics, embed_cached

    q = embed_cached(backend, texts, cache)  # (N, D)
    emb = embed_cached(backend, names, cache)  # (L, D)
    tokens = backend.label_vectors(names)  # (L, H)
    preds = []
    with torch.inference_mode():
        for s in range(0, len(q), 512):
            b = q[s : s + 512]
            preds.append(backend.model(b, tokens.expand(len(b), -1, -1), emb.expand(len(b), -1, -1)).argmax(-1))
    return classification_metrics(torch.cat(preds), torch.tensor([names.index(g) for g in gold]), len(names))


def cosine_metrics(backend, texts, gold, names, cache) -> dict[str, float]:
    """The cosine baseline from the same cached embeddings: argmax_y cos(f(x), f(y)) (App. E)."""
    import torch.nn.functional as F

    from benchmarks.sce_train import classification_metrics, embed_cached

    q, emb = embed_cached(backend, texts, cache), embed_cached(backend, names, cache)
    pred = (F.normalize(q, dim=-1) @ F.normalize(emb, dim=-1).T).argmax(-1)
    return classification_metrics(pred, torch.tensor([names.index(g) for g in gold]), len(names))


def check_end_to_end(clf, backend, texts, names, cache) -> bool:
    """``Classifier.classify`` and the cached path pick the same labels on ``texts``."""
    from benchmarks.sce_train import embed_cached

    q, emb = embed_cached(backend, texts, cache), embed_cached(backend, names, cache)
    with torch.inference_mode():
        cached = backend.model(q, backend.label_vectors(names).expand(len(q), -1, -1), emb.expand(len(q), -1, -1))
    direct = clf.classify(texts, names, progress=False)
    return [names[i] for i in cached.argmax(-1).tolist()] == [p.label for p in direct]


def train_ablation(model_dir: Path):
    """The shipped recipe with label self-attention disabled."""
    from benchmarks.sce_train import SCETrainConfig, train_sce

    record = json.loads((model_dir / "training.json").read_text())
    recipe = record["config"]
    cfg = SCETrainConfig(**{**recipe, "label_attention": False})
    rows, extra = training_rows(record["max_rows_per_source"], record.get("wordnet_rows", 0),
                                record.get("snli_rows", 0), recipe["seed"])
    backend, history = train_sce(rows, cfg, candidate_rows=extra, log=lambda m: print(m, flush=True))
    return backend, history


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", type=Path, default=DEFAULT_OUTPUT, help="SCE folder (default: the shipped one)")
    parser.add_argument("--ablation", type=Path, default=None, help="SCE folder trained with --no-label-attention")
    parser.add_argument("--write-card", action="store_true", help="put the test results into the model's README.md")
    parser.add_argument("--texts", type=int, default=256, help="texts per throughput measurement")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest when other jobs share the CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from udtc import Classifier
    from benchmarks.sce_train import cache_folder
    from udtc.defaults import COSINE_MINILM

    clf = Classifier.from_pretrained(args.model, device="cpu")
    sce = clf.backend
    cache = cache_folder(sce.embedder_name)
    models = {"SCE": sce}
    ablation_seconds = None
    if args.ablation:
        models["SCE, no label attention"] = Classifier.from_pretrained(args.ablation, device="cpu").backend
    elif not args.quick and (args.model / "training.json").exists():
        started = time.perf_counter()
        models["SCE, no label attention"], _ = train_ablation(args.model)
        ablation_seconds = round(time.perf_counter() - started, 1)

    results: dict[str, dict[str, dict[str, float]]] = {"cosine": {}, **{m: {} for m in models}}
    agree = {}
    for name in EVAL_SETS:
        _, test = dev_test(name)
        if args.quick:
            test = test.subset(range(0, len(test), 25))
        names = list(test.label_names)
        results["cosine"][name] = cosine_metrics(sce, test.texts, test.labels, names, cache)
        for label, backend in models.items():
            results[label][name] = evaluate(backend, test.texts, test.labels, names, cache)
        agree[name] = check_end_to_end(clf, sce, test.texts[:48], names, cache)
    means = {MEAN_HELD_OUT: HELD_OUT, MEAN_UNSEEN: UNSEEN_LABELS}
    for scores in results.values():
        for column, names in means.items():
            scores[column] = {k: round(sum(scores[n][k] for n in names) / len(names), 2) for k in ("accuracy", "macro_f1")}

    columns = [*EVAL_SETS, *means]
    table = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, scores in results.items():
        table.append(f"| {label} | " + " | ".join(f"{scores[c]['accuracy']:.1f} / {scores[c]['macro_f1']:.1f}"
                                                for c in columns) + " |")
    table.append("\naccuracy / macro-F1 (%), test halves of the held-out data sets\n")

    # throughput against the number of labels
    cosine = Classifier.from_pretrained(COSINE_MINILM, device="cpu")
    texts = synthetic_texts(32 if args.quick else args.texts, 24)
    words = synthetic_texts(128, 2, seed=1)
    speed = []
    for n in LABEL_COUNTS[:4] if args.quick else LABEL_COUNTS:
        labels = list(dict.fromkeys(words))[:n]
        row = {"labels": n}
        for key, c in (("sce", clf), ("cosine", cosine)):
            run = partial(c.classify, texts, labels, multi_label=n == 1, progress=False)
            seconds = best_of(run, 1)
            row[f"{key}_texts_per_s"] = round(len(texts) / seconds, 1)
        row["ratio"] = round(row["sce_texts_per_s"] / row["cosine_texts_per_s"], 2)
        speed.append(row)
    table += ["| labels | SCE texts/s | cosine texts/s | ratio SCE/cosine |", "|---|---|---|---|"]
    table += [f"| {r['labels']} | {r['sce_texts_per_s']} | {r['cosine_texts_per_s']} | {r['ratio']} |" for r in speed]
    print("\n".join(table))
    payload = {"model": str(args.model), "split": "test half, split(test_fraction=0.5, seed=0)",
               "quick": args.quick, "results": results, "end_to_end_agrees": agree, "throughput": speed,
               "ablation_training_seconds": ablation_seconds}
    write_results("sce" + ("_quick" if args.quick else ""), payload, "\n".join(table))
    if args.write_card and not args.quick:
        from benchmarks.train_sce import _load_name, model_card

        record = json.loads((args.model / "training.json").read_text())
        test = {name: f"{results['cosine'][name]['accuracy']:.1f} / {results['cosine'][name]['macro_f1']:.1f} -> "
                      f"{results['SCE'][name]['accuracy']:.1f} / {results['SCE'][name]['macro_f1']:.1f}"
                for name in columns}
        card = model_card(record, load_name=_load_name(args.model), test=test)
        (args.model / "README.md").write_text(card.render(), encoding="utf-8")
    return payload


if __name__ == "__main__":
    main()
