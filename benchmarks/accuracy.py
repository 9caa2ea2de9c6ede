"""Zero-shot accuracy and macro-F1 of every available udtc model on eight labelled data sets.

Each data set is a seeded stratified sample (``benchmarks.datasets.sample``, default 500 rows;
smaller samples are prefixes of larger ones, per label); every model is given the data set's
natural-language label names and nothing else (zero-shot). The models come from ``MODELS`` below;
a model whose backend is not registered or whose weights are not on this machine is skipped with
a note. Cosine models are scored with two label templates, the raw label ``"{}"`` and
``"This text is about {}."``, and their raw cosines feed the ``multi_label_shift`` analysis: for
each data set, the one-vs-rest macro-F1 of the rule "label on when cos(text, label) >= shift"
for shifts 0.05..0.6, averaged over data sets, whose argmax is the recommended default.

    python -m benchmarks.accuracy                       # 500 per data set, every available model
    python -m benchmarks.accuracy --n 200 --models MiniLM
    python -m benchmarks.accuracy --fetch               # download registry weights first (MPNet, 400 MB)
    python -m benchmarks.accuracy --quick               # CI smoke test: 2 data sets x 8 texts
    python -m benchmarks.accuracy --threads 1           # on a busy shared CPU (the numbers do not change)

Metrics are plain numpy (no scikit-learn): accuracy, and macro-F1 = the mean over the sample's
labels of 2 TP / (2 TP + FP + FN) (0 for a label never predicted nor present).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import models as registry
from benchmarks.common import peak_rss_mb, write_results
from benchmarks.datasets import DATASETS as REGISTRY
from benchmarks.datasets import HELD_OUT, load, sample, training_sources

DATASETS = ("bbc_news", "sms_spam", "trec6", "trec50", "vader_movies", "vader_tweets", "vader_amazon", "rotten_tomatoes")
QUICK_DATASETS = ("sms_spam", "trec6")
#: label templates tried on cosine models; "{}" is the cosine backend's default
TEMPLATES = ("{}", "This text is about {}.")
SHIFTS = tuple(round(0.05 * i, 2) for i in range(1, 13))  # 0.05 .. 0.60
CURRENT_SHIFT = 0.1  # udtc/backends/cosine.py default (chosen from this benchmark), for comparison
_HELD_FAMILIES = {REGISTRY[name].family or name for name in HELD_OUT}
#: data sets no training mixture may use (HELD_OUT and their families): zero-shot for every model
HELD_OUT_SETS = tuple(n for n in DATASETS if (REGISTRY[n].family or n) in _HELD_FAMILIES)
SHORT = {"bbc_news": "BBC", "sms_spam": "SMS spam", "trec6": "TREC-6", "trec50": "TREC-50", "vader_movies": "VADER movies",
         "vader_tweets": "VADER tweets", "vader_amazon": "VADER Amazon", "rotten_tomatoes": "Rotten Tom."}


class Unavailable(Exception):
    """A model that cannot run on this machine; the message says what is missing."""


# ---------------------------------------------------------------------------------------------
# Models to benchmark
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelEntry:
    """One model to benchmark.

    Attributes:
        name: Display name.
        backend: udtc backend name; the entry is skipped when it is not registered.
        locate: ``fetch -> path`` for ``Classifier.from_pretrained``; raises ``Unavailable``.
        templates: Label templates to score with (None = the backend's default).
        max_n: Cap on rows per data set (for slow models), or None.
        options: Backend options passed to ``from_pretrained``.
        quick: Whether ``--quick`` runs it (the smoke test keeps one model per code path).
        trained_on: Data sets the model was trained on (its cells there are not zero-shot).
    """

    name: str
    backend: str
    locate: Callable[[bool], Path]
    templates: tuple[str | None, ...] = (None,)
    max_n: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    quick: bool = True
    trained_on: tuple[str, ...] = ()


def _registry_model(name: str, *modules: str) -> Callable[[bool], Path]:
    def locate(fetch: bool) -> Path:
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise Unavailable(f"needs the packages {missing} (pip install {' '.join(missing)})")
        path = registry.locate(name)
        if path is None and fetch:
            path = registry.fetch(name)
        if path is None:
            raise Unavailable(f"weights not fetched: run `python -m benchmarks.models --fetch {name}` or pass --fetch")
        return path

    return locate


def _shipped(sub: str) -> Callable[[bool], Path]:
    def locate(fetch: bool) -> Path:
        import udtc

        path = Path(udtc.__file__).parent / sub
        if not path.is_dir():
            raise Unavailable(f"udtc/{sub} does not exist")
        return path

    return locate


MODELS: tuple[ModelEntry, ...] = (
    ModelEntry("MiniLM-L6 cosine", "cosine", _registry_model("all-minilm-l6-v2"), templates=TEMPLATES),
    ModelEntry("MPNet-base cosine", "cosine", _registry_model("all-mpnet-base-v2"), templates=TEMPLATES, quick=False),
    # trained on benchmarks.datasets.training_mixture(): every data set outside HELD_OUT_SETS
    ModelEntry("SCE MiniLM (shipped)", "sce", _shipped("models/sce-minilm"), trained_on=tuple(training_sources())),
    # 135M-parameter LM: the prompt of every text runs through 30 layers, so it gets fewer rows
    ModelEntry("SmolLM2-135M llm-prompt", "llm-prompt", _registry_model("smollm2-135m-instruct", "gguf", "accelerate"),
               max_n=100),
    # label-set mode (no trained head): cosine of last-token states, the zero-shot floor of llm-head
    ModelEntry("SmolLM2-135M llm-head", "llm-head", _registry_model("smollm2-135m-instruct", "gguf", "accelerate"),
               max_n=50, quick=False),
)


# ---------------------------------------------------------------------------------------------
# Metrics (numpy)
# ---------------------------------------------------------------------------------------------


def _rows(dataset, n: int) -> int:
    """``n`` clipped to what a stratified sample of ``dataset`` allows (at least one row per label)."""
    return min(len(dataset), max(n, len(dataset.label_names)))


def accuracy(gold: np.ndarray, pred: np.ndarray) -> float:
    """Share of rows whose predicted label index equals the gold one."""
    return float(np.mean(gold == pred))


def f1_per_label(gold: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """F1 of each label (columns) from boolean (..., n, L) gold and predicted memberships: shape (..., L)."""
    tp = np.sum(gold & pred, axis=-2)
    fp = np.sum(~gold & pred, axis=-2)
    fn = np.sum(gold & ~pred, axis=-2)
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(denominator.shape), where=denominator > 0)


def macro_f1(gold: np.ndarray, pred: np.ndarray, n_labels: int) -> float:
    """Mean F1 over ``n_labels`` labels of single-label predictions (label indices)."""
    eye = np.eye(n_labels, dtype=bool)
    return float(f1_per_label(eye[gold], eye[pred]).mean())


def all_on_f1(labels: Sequence[str], label_names: Sequence[str]) -> float:
    """One-vs-rest macro-F1 of switching every label on: what a threshold must beat to say anything."""
    gold = np.eye(len(label_names), dtype=bool)[[list(label_names).index(y) for y in labels]]  # (n, L)
    return float(f1_per_label(gold, np.ones_like(gold)).mean())


def shift_f1(cos: np.ndarray, gold: np.ndarray, shifts: Sequence[float]) -> np.ndarray:
    """One-vs-rest macro-F1 of "label on when cos >= shift", for every shift: shape (len(shifts),)."""
    on = cos[None] >= np.asarray(shifts)[:, None, None]  # (S, n, L)
    truth = np.eye(cos.shape[1], dtype=bool)[gold][None]  # (1, n, L)
    return f1_per_label(np.broadcast_to(truth, on.shape), on).mean(-1)


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


def classify_probs(clf, texts: list[str], labels: list[str], template: str | None, batch_size: int) -> tuple[np.ndarray, int]:
    """Single-label probabilities (n, L) in ``labels`` order through ``Classifier.classify``; truncated count."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation is counted, not warned about
        preds = clf.classify(texts, labels, template=template, batch_size=batch_size, progress=False)
    probs = np.array([[p.scores[x] for x in labels] for p in preds], dtype=np.float64)
    return probs, sum(p.truncated for p in preds)


def cosine_matrix(clf, texts: list[str], labels: list[str], template: str, batch_size: int,
                  text_emb=None) -> tuple[np.ndarray, Any, int]:
    """Raw cosines (n, L) exactly as the cosine backend computes them; the text embeddings are reusable."""
    import torch.nn.functional as F

    backend = clf.backend
    truncated = 0
    if text_emb is None:
        text_emb, cut = backend.embed([backend.text_prefix + t for t in texts], batch_size)  # (n, D)
        text_emb, truncated = F.normalize(text_emb, dim=-1), sum(cut)
    label_emb = F.normalize(backend.label_embeddings([template.replace("{}", x) for x in labels], batch_size), dim=-1)
    return (text_emb @ label_emb.T).double().numpy(), text_emb, truncated  # (n, L)


def _check_fast_path(clf, texts: list[str], labels: list[str], template: str, cos: np.ndarray, batch_size: int) -> None:
    """The cosine shortcut must give what ``classify`` gives (it skips re-embedding texts per template)."""
    k = min(8, len(texts))
    probs, _ = classify_probs(clf, texts[:k], labels, template, batch_size)
    logits = clf.backend.scale * cos[:k]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    gap = float(np.abs(probs - expected).max())
    assert gap < 1e-3, f"cosine fast path differs from Classifier.classify by {gap:.2e}"


def evaluate(entry: ModelEntry, clf, data: dict[str, Any], n: int, seed: int, batch_size: int) -> list[dict[str, Any]]:
    """One result row per template: per-data-set metrics and, for cosine, the shift curves."""
    templates = [t if t is not None else clf.backend.default_template for t in entry.templates]
    rows = [{"model": entry.name, "backend": entry.backend, "template": t, "per_dataset": {}, "shift_f1": {}}
            for t in templates]
    fast = clf.backend_name == "cosine"
    first = next(iter(data))
    for name, full in data.items():
        subset = sample(full, _rows(full, n if entry.max_n is None else min(n, entry.max_n)), seed=seed)
        texts, labels = subset.texts, list(subset.label_names)
        gold = np.array([labels.index(y) for y in subset.labels])
        text_emb = None
        for row, template in zip(rows, templates):
            started = time.perf_counter()
            if fast:
                scores, text_emb, truncated = cosine_matrix(clf, texts, labels, template, batch_size, text_emb)
                if name == first:
                    _check_fast_path(clf, texts, labels, template, scores, batch_size)
                row["shift_f1"][name] = shift_f1(scores, gold, SHIFTS).round(4).tolist()
            else:
                scores, truncated = classify_probs(clf, texts, labels, template, batch_size)
            seconds = time.perf_counter() - started
            pred = scores.argmax(1)
            result = {"n": len(texts), "labels": len(labels), "accuracy": round(accuracy(gold, pred), 4),
                      "macro_f1": round(macro_f1(gold, pred, len(labels)), 4), "truncated": int(truncated),
                      "seconds": round(seconds, 2)}
            row["per_dataset"][name] = result
            print(f"  {entry.name:<24} {template!r:<26} {name:<16} n={len(texts):<4} acc={result['accuracy']:.3f} "
                  f"F1={result['macro_f1']:.3f} ({seconds:.1f} s)", flush=True)
    for row in rows:
        results = row["per_dataset"].values()
        row["mean_accuracy"] = round(float(np.mean([r["accuracy"] for r in results])), 4)
        row["mean_macro_f1"] = round(float(np.mean([r["macro_f1"] for r in results])), 4)
        if row["shift_f1"]:
            mean = np.mean(list(row["shift_f1"].values()), axis=0)
            row["shift_mean_f1"] = mean.round(4).tolist()
            row["best_shift"] = SHIFTS[int(mean.argmax())]
        else:
            del row["shift_f1"]
    return rows


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _template_label(row: dict[str, Any]) -> str:
    return "raw label" if row["template"] == "{}" else f"`{row['template']}`"


def annotate(rows: list[dict[str, Any]], all_on: dict[str, float]) -> None:
    """Add derived fields to result rows: data sets trained on, held-out means, the shift on informative data sets.

    A data set is informative for the shift when some shift beats switching every label on (``all_on``);
    on the others no cosine threshold separates the labels, and the lowest shift wins by default.
    """
    trained = {e.name: e.trained_on for e in MODELS}
    for row in rows:
        if "shift_f1" in row:
            informative = [x for x, f1 in row["shift_f1"].items() if max(f1) > all_on[x]]
            row["shift_informative"] = informative
            if informative:
                mean = np.mean([row["shift_f1"][x] for x in informative], axis=0)
                row["shift_informative_mean_f1"] = mean.round(4).tolist()
                row["best_shift_informative"] = SHIFTS[int(mean.argmax())]
        row["trained_on"] = [n for n in row["per_dataset"] if n in trained.get(row["model"], ())]
        held = [row["per_dataset"][n] for n in HELD_OUT_SETS if n in row["per_dataset"]]
        if held:
            row["held_out_mean_accuracy"] = round(float(np.mean([r["accuracy"] for r in held])), 4)
            row["held_out_mean_macro_f1"] = round(float(np.mean([r["macro_f1"] for r in held])), 4)


def metric_table(rows: list[dict[str, Any]], key: str, names: Sequence[str], n: int) -> list[str]:
    held = [x for x in names if x in HELD_OUT_SETS]
    header = ("| model | template | " + " | ".join(SHORT.get(x, x) for x in names) + " | **mean** |"
              + (f" **held-out mean** ({len(held)}) |" if held else ""))
    lines = [header, "|---|---|" + "---|" * (len(names) + 1 + bool(held))]
    suffix = "accuracy" if key == "accuracy" else "macro_f1"
    for row in rows:
        cells = [f"{row['per_dataset'][x][key]:.3f}" + ("†" if x in row.get("trained_on", ()) else "")
                 if x in row["per_dataset"] else "–" for x in names]
        size = max(r["n"] for r in row["per_dataset"].values())
        model = row["model"] + (f" (n ≤ {size})" if size < n else "")
        line = f"| {model} | {_template_label(row)} | " + " | ".join(cells) + f" | **{row['mean_' + suffix]:.3f}** |"
        if held:
            line += f" **{row['held_out_mean_' + suffix]:.3f}** |"
        lines.append(line)
    return lines


def template_recommendation(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cosine model: which template has the higher mean macro-F1, and by how much."""
    out: dict[str, Any] = {}
    for model in dict.fromkeys(r["model"] for r in rows if r["backend"] == "cosine"):
        by_template = {r["template"]: r for r in rows if r["model"] == model}
        if len(by_template) < 2:
            continue
        best = max(by_template.values(), key=lambda r: (r["mean_macro_f1"], r["mean_accuracy"]))
        out[model] = {"best_template": best["template"],
                      **{t: {"mean_accuracy": r["mean_accuracy"], "mean_macro_f1": r["mean_macro_f1"]}
                         for t, r in by_template.items()}}
    return out


def shift_tables(rows: list[dict[str, Any]], names: Sequence[str], all_on: dict[str, float]) -> list[str]:
    curves = [r for r in rows if "shift_mean_f1" in r]
    if not curves:
        return []
    current = SHIFTS.index(CURRENT_SHIFT)
    lines = [(f"| model | template | best shift, all sets | mean F1 at best | at {CURRENT_SHIFT} (default) | best shift, "
              f"informative sets | their mean F1 at best | at {CURRENT_SHIFT} | informative sets | best shift per data set |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in curves:
        mean, informative = row["shift_mean_f1"], row.get("shift_informative_mean_f1")
        per = ", ".join(f"{SHORT.get(n, n)} {SHIFTS[int(np.argmax(row['shift_f1'][n]))]:.2f}" for n in names
                        if n in row["shift_f1"])
        sets = ", ".join(SHORT.get(x, x) for x in row.get("shift_informative", ())) or "none"
        rest = (f"**{row['best_shift_informative']:.2f}** | {max(informative):.3f} | {informative[current]:.3f}"
                if informative else "– | – | –")
        lines.append(f"| {row['model']} | {_template_label(row)} | **{row['best_shift']:.2f}** | "
                     f"{max(mean):.3f} | {mean[current]:.3f} | {rest} | {sets} | {per} |")
    default = curves[0]  # the first cosine model with the raw label: what udtc does by default
    lines += ["", f"One-vs-rest macro-F1 of `cos >= shift`, {default['model']}, {_template_label(default)}:", "",
              "| shift | " + " | ".join(SHORT.get(n, n) for n in names if n in default["shift_f1"]) + " | **mean** |",
              "|---|" + "---|" * (len(default["shift_f1"]) + 1)]
    for i, shift in enumerate(SHIFTS):
        cells = [f"{default['shift_f1'][n][i]:.3f}" for n in names if n in default["shift_f1"]]
        mean = f"{default['shift_mean_f1'][i]:.3f}"
        mean = f"**{mean}**" if shift == default["best_shift"] else mean
        lines.append(f"| {shift:.2f} | " + " | ".join(cells) + f" | {mean} |")
    if all_on:
        values = [all_on[n] for n in names if n in default["shift_f1"]]
        lines.append("| all labels on | " + " | ".join(f"{v:.3f}" for v in values) + f" | {np.mean(values):.3f} |")
    return lines


def report(rows: list[dict[str, Any]], skipped: list[dict[str, str]], names: Sequence[str], n: int,
           all_on: dict[str, float]) -> str:
    intro = (f"Zero-shot, {n} rows per data set (seeded stratified sample; fewer where a model caps it: n ≤ ...). "
             f"Held-out data sets ({', '.join(SHORT[x] for x in HELD_OUT_SETS)}) are in no training mixture; "
             "† marks a data set the model was trained on (not zero-shot).")
    lines = [intro, "", "### Accuracy", "", *metric_table(rows, "accuracy", names, n), "", "### Macro-F1", "",
             *metric_table(rows, "macro_f1", names, n)]
    recommendation = template_recommendation(rows)
    if recommendation:
        lines += ["", "### Label template (cosine)", ""]
        for model, rec in recommendation.items():
            scores = ", ".join(f"{'raw label' if t == '{}' else repr(t)}: acc {v['mean_accuracy']:.3f} / F1 "
                               f"{v['mean_macro_f1']:.3f}" for t, v in rec.items() if t != "best_template")
            lines.append(f"- {model}: best `{rec['best_template']}` ({scores})")
    shifts = shift_tables(rows, names, all_on)
    if shifts:
        lines += ["", "### Cosine `multi_label_shift`", "", *shifts]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"{s['model']} ({s['reason']})" for s in skipped)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def render(path: Path) -> dict[str, Any]:
    """Rewrite the markdown (and derived JSON fields) of a result file from its rows, without re-running."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    payload.pop("machine", None)  # write_results adds it again
    for name, info in payload["datasets"].items():  # older files: recompute the all-on baseline from the sample
        if "all_on_f1" not in info:
            full = load(name)
            info["all_on_f1"] = round(all_on_f1(sample(full, info["n"], seed=payload["seed"]).labels, full.label_names), 4)
    all_on = {name: info["all_on_f1"] for name, info in payload["datasets"].items()}
    annotate(payload["results"], all_on)
    payload["held_out_sets"] = list(HELD_OUT_SETS)
    payload["template_recommendation"] = template_recommendation(payload["results"])
    shift_rows = [r for r in payload["results"] if "best_shift" in r]
    payload["multi_label_shift"]["best_on_informative_sets"] = {f"{r['model']} | {r['template']}":
                                                                r.get("best_shift_informative") for r in shift_rows}
    table = report(payload["results"], payload["skipped"], list(payload["datasets"]), payload["n"], all_on)
    print(table)
    write_results(path.stem, payload, table)
    return payload


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke test: 2 data sets x 8 rows, one model per code path, results *_quick")
    parser.add_argument("--n", type=int, default=500, help="rows per data set (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=None, metavar="NAME", help=f"subset of {list(DATASETS)}")
    parser.add_argument("--models", nargs="+", default=None, metavar="TEXT",
                        help="only models whose name contains one of these strings (case-insensitive)")
    parser.add_argument("--fetch", action="store_true", help="download registry weights that are not cached yet")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (default 0: torch's default; 1 wastes less CPU on a busy shared machine)")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only re-render the tables of an existing result file (e.g. benchmarks/results/accuracy.json)")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.render)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    load_start = [round(x, 2) for x in os.getloadavg()]  # the CPU is shared: record how busy it was
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    names = list(args.datasets or (QUICK_DATASETS if args.quick else DATASETS))
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        parser.error(f"unknown data sets {unknown}; valid: {list(DATASETS)}")
    n = 8 if args.quick else args.n
    data = {name: load(name) for name in names}

    from udtc import Classifier, available_backends

    entries = [e for e in MODELS if (e.quick or not args.quick)
               and (not args.models or any(s.lower() in e.name.lower() for s in args.models))]
    rows, skipped, loaded = [], [], []
    for entry in entries:
        try:
            if entry.backend not in available_backends():
                raise Unavailable(f"backend {entry.backend!r} is not registered")
            path = entry.locate(args.fetch)
        except Unavailable as err:
            skipped.append({"model": entry.name, "reason": str(err)})
            print(f"skip {entry.name}: {err}", flush=True)
            continue
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = Classifier.from_pretrained(path, backend=entry.backend, device="cpu", **entry.options)
        load_s = time.perf_counter() - started
        print(f"{entry.name}: loaded {path} in {load_s:.1f} s", flush=True)
        model_rows = evaluate(entry, clf, data, n, args.seed, args.batch_size)
        for row in model_rows:
            row["path"], row["load_seconds"] = str(path), round(load_s, 2)
        rows += model_rows
        loaded.append(entry.name)
        del clf

    all_on = {name: all_on_f1(sample(d, _rows(d, n), seed=args.seed).labels, d.label_names) for name, d in data.items()}
    annotate(rows, all_on)
    table = report(rows, skipped, names, n, all_on)
    print(table)
    recommendation = template_recommendation(rows)
    shift_rows = [r for r in rows if "best_shift" in r]
    payload = {
        "command": "python -m benchmarks.accuracy " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "n": n, "seed": args.seed, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
        "datasets": {name: {"rows": len(d), "n": _rows(d, n), "labels": list(d.label_names), "all_on_f1": round(all_on[name], 4)}
                     for name, d in data.items()},
        "results": rows, "skipped": skipped, "template_recommendation": recommendation,
        "multi_label_shift": {
            "shifts": list(SHIFTS), "current": CURRENT_SHIFT,
            "rule": "per data set: mean over labels of the one-vs-rest F1 of (cos >= shift); then mean over data sets",
            "best": {f"{r['model']} | {r['template']}": r["best_shift"] for r in shift_rows},
            "best_on_informative_sets": {f"{r['model']} | {r['template']}": r.get("best_shift_informative")
                                         for r in shift_rows},
        },
        "held_out_sets": list(HELD_OUT_SETS),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "wall_seconds": round(time.perf_counter() - wall_start, 1), "cpu_seconds": round(time.process_time() - cpu_start, 1),
    }
    # a run on a subset never overwrites the full results
    write_results("accuracy" + ("_quick" if args.quick else "_partial" if args.models or args.datasets else ""), payload,
                  table)
    return payload


if __name__ == "__main__":
    main()
