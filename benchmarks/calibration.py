"""Calibration: ECE and macro-F1 of zero-shot, ``Classifier.calibrate`` and ``finetune`` with k examples per label.

Cosine all-MiniLM-L6-v2 (``udtc.defaults.COSINE_MINILM``, the default model when this was first measured), or with
``--model default`` the default model (``TUNED_MINILM``; results ``calibration_default``), on the unseen-label
protocol of ``benchmarks.unseen`` (the six ``UNSEEN`` sets, each split into a DEV and a TEST half).
For every k and seed, k labelled examples per label are drawn from the DEV half (``sample_shots``,
seeds 0..S-1; a label with fewer DEV rows gives all it has) and everything is measured on the TEST
half, which no choice looks at. The label set is every label with at least one DEV row (trec50: 44
of 50; its 6 TEST rows of the other 6 labels are dropped, for every method alike).

Per k and seed: ``clf.calibrate(rows)`` timed end to end (scoring the dev texts + fitting), with
and without the per-label biases (``bias=False``: temperature only), then ECE (15 equal-width bins
of the top probability) and macro-F1 on the test half; ``finetune(shots=k, seed=0)`` (the backend's
default method with ``--finetune-epochs`` epochs, 1 seed: it is slower) timed likewise. Zero-shot
rows with ``prior="batch"`` and ``prior="sinkhorn"`` over the whole test half are in the same table.

The calibrated test scores are computed from the zero-shot test scores with the fitted parameters
(``softmax((log p + b) / T)``, the same arithmetic as ``classify``, checked against ``classify``
on 16 texts per set and reported as ``max_abs_diff``), so each seed does not re-encode the test set.

    python -m benchmarks.calibration --threads 1          # 6 sets x k 4, 8, 16 x 5 seeds (+ finetune, 1 seed)
    python -m benchmarks.calibration --quick              # smoke test: trec6, k=4, 1 seed, a tenth of the halves
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import COSINE_MODELS, write_results
from benchmarks.unseen import UNSEEN, LabelSet, label_sets
from udtc.defaults import COSINE_MINILM

SHOTS = (4, 8, 16)
BINS = 15
DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
GOAL_POINTS, GOAL_ECE_RATIO, GOAL_SECONDS = 3.0, 0.5, 10.0
#: a bound, not a method: calibrate's biases with the ECE-optimal temperature read off the TEST half
ORACLE = "calibrate, temperature chosen on TEST (bound)"


def ece(probs: np.ndarray, gold: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error of the top probability: sum over bins of |accuracy - confidence| * share."""
    top, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(top, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs((pred[mask] == gold[mask]).mean() - top[mask].mean())
    return float(total)


def ece_floor(probs: np.ndarray, draws: int = 20, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model would still show on these rows: the mean ECE of ``probs``
    against labels drawn from ``probs`` itself (calibrated by construction), same bins and row count.
    What is left above it is miscalibration; what is below it is the estimator's noise."""
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(probs / probs.sum(1, keepdims=True), 1)  # (n, L)
    return float(np.mean([ece(probs, (rng.random((len(probs), 1)) > cumulative).sum(1).clip(0, probs.shape[1] - 1))
                          for _ in range(draws)]))


def oracle_temperature_ece(log_p: torch.Tensor, gold: np.ndarray) -> float:
    """A bound, not a method: the lowest test ECE any temperature reaches on ``log_p`` (n, L), found on
    the TEST labels themselves (81 temperatures, x e^-2 .. x e^2, log-spaced)."""
    return min(ece(torch.softmax(log_p / t, -1).numpy(), gold) for t in np.exp(np.linspace(-2, 2, 81)))


def reliability(probs: np.ndarray, gold: np.ndarray, bins: int = 10) -> dict[str, list[float]]:
    top, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(top, edges[1:-1]), 0, bins - 1)
    conf, acc, count = [], [], []
    for b in range(bins):
        mask = which == b
        conf.append(float(top[mask].mean()) if mask.any() else float("nan"))
        acc.append(float((pred[mask] == gold[mask]).mean()) if mask.any() else float("nan"))
        count.append(int(mask.sum()))
    return {"confidence": conf, "accuracy": acc, "count": count}


def scores(probs: np.ndarray, gold: np.ndarray, labels: list[str]) -> dict[str, float]:
    from udtc.training.metrics import classification_metrics

    pred = [labels[i] for i in probs.argmax(1)]
    m = classification_metrics(pred, [labels[i] for i in gold], labels)
    return {"macro_f1": round(m["macro_f1"], 4), "accuracy": round(m["accuracy"], 4), "ece": round(ece(probs, gold), 4),
            "ece_floor": round(ece_floor(probs), 4)}


def test_probs(clf, texts: list[str], labels: list[str], **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        preds = clf.classify(texts, labels, batch_size=64, progress=False, **kwargs)
    return np.array([[p.scores[x] for x in labels] for p in preds], dtype=np.float64)  # (n, L)


def run_dataset(s: LabelSet, *, shots: tuple[int, ...], seeds: list[int], finetune_epochs: int,
                finetune: bool, model: str = COSINE_MINILM) -> dict:
    import udtc
    from udtc import Classifier
    from udtc.priors import PRIORS
    from udtc.training.data import load_examples, sample_shots

    labels = [x for j, x in enumerate(s.dev.labels) if bool((s.dev.gold == j).any())]  # labels with a DEV row
    pool_rows = [{"text": t, "label": s.dev.labels[int(y)]} for t, y in zip(s.dev.texts, s.dev.gold)]
    test = [(t, s.test.labels[int(y)]) for t, y in zip(s.test.texts, s.test.gold) if s.test.labels[int(y)] in labels]
    texts, gold = [t for t, _ in test], np.array([labels.index(y) for _, y in test])
    pool_examples = load_examples(pool_rows, what="dev")
    clf = Classifier.from_pretrained(model, device="cpu")
    zero_p = test_probs(clf, texts, labels)
    log_p = torch.tensor(zero_p).clamp_min(1e-300).log()
    rows: list[dict] = [{"method": "zero-shot", "k": 0, **scores(zero_p, gold, labels)}]
    for prior in PRIORS:
        corrected = torch.softmax(PRIORS[prior](log_p, labels), -1).numpy()
        rows.append({"method": f"prior={prior}", "k": 0, **scores(corrected, gold, labels)})
    diagram = {"zero-shot": reliability(zero_p, gold)}
    max_diff = 0.0
    for k in shots:
        for seed in seeds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dev = sample_shots(pool_examples, k, seed)
            dev_rows = [{"text": t, "label": y[0]} for t, y in zip(dev.texts, dev.targets)]
            for method, bias in (("calibrate", True), ("calibrate T only", False)):
                started = time.perf_counter()
                calibrated = clf.calibrate(dev_rows, labels=labels, bias=bias)
                seconds = time.perf_counter() - started
                cal = calibrated.calibration.single_label
                z = (log_p + torch.tensor([cal.bias.get(x, 0.0) for x in labels], dtype=torch.float64)) / cal.temperature
                p = torch.softmax(z, -1).numpy()
                if seed == seeds[0]:
                    direct = test_probs(calibrated, texts[:16], labels)
                    max_diff = max(max_diff, float(np.abs(direct - p[:16]).max()))
                    if k == 8:
                        diagram[f"{method} k=8"] = reliability(p, gold)
                rows.append({"method": method, "k": k, "seed": seed, "seconds": round(seconds, 2), "dev_rows": len(dev_rows),
                             "temperature": round(cal.temperature, 3), **scores(p, gold, labels)})
                print(f"  {s.name} {method} k={k} seed={seed}: {rows[-1]}", flush=True)
                if bias:  # the same biases with the temperature chosen on the TEST half: what a temperature could reach
                    rows.append({"method": ORACLE, "k": k, "seed": seed, "macro_f1": rows[-1]["macro_f1"],
                                 "accuracy": rows[-1]["accuracy"], "ece": round(oracle_temperature_ece(z, gold), 4),
                                 "ece_floor": rows[-1]["ece_floor"]})
        if finetune:
            with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                base = Classifier.from_pretrained(model, device="cpu")
                started = time.perf_counter()
                tuned, _ = udtc.finetune(base, [r for r in pool_rows if r["label"] in labels], shots=k, seed=0,
                                         epochs=finetune_epochs, output_dir=Path(tmp) / "model", progress=False)
                seconds = time.perf_counter() - started
            p = test_probs(tuned, texts, labels)
            rows.append({"method": "finetune", "k": k, "seed": 0, "seconds": round(seconds, 2), **scores(p, gold, labels)})
            print(f"  {s.name} finetune k={k}: {rows[-1]}", flush=True)
    return {"dataset": s.name, "labels": labels, "pool": len(pool_rows), "test_examples": len(texts), "rows": rows,
            "reliability": diagram, "calibrated_vs_classify_max_abs_diff": max_diff}


def summarise(results: list[dict], shots: tuple[int, ...]) -> list[dict]:
    """Per method and k: mean over seeds per set, then mean over sets."""
    out = []
    keys = [("zero-shot", 0), ("prior=batch", 0), ("prior=sinkhorn", 0)]
    keys += [(m, k) for k in shots for m in ("calibrate", ORACLE, "calibrate T only", "finetune")]
    for method, k in keys:
        per_set = {}
        for result in results:
            runs = [r for r in result["rows"] if r["method"] == method and r["k"] == k]
            if runs:
                per_set[result["dataset"]] = {m: statistics.mean(r[m] for r in runs) for m in ("macro_f1", "ece", "accuracy", "ece_floor")
                                            if all(m in r for r in runs)}
                per_set[result["dataset"]]["test"] = runs[0].get("test")
                per_set[result["dataset"]]["seconds"] = max(r.get("seconds", 0.0) for r in runs)
                per_set[result["dataset"]]["runs"] = len(runs)
        if per_set:
            out.append({"method": method, "k": k, "per_set": per_set,
                        "mean_macro_f1": statistics.mean(v["macro_f1"] for v in per_set.values()),
                        "mean_ece": statistics.mean(v["ece"] for v in per_set.values()),
                        "mean_ece_floor": statistics.mean(v.get("ece_floor", float("nan")) for v in per_set.values()),
                        "max_seconds": max(v["seconds"] for v in per_set.values())})
    return out


def table(summary: list[dict], names: list[str]) -> str:
    head = " | ".join(f"{n} F1 / ECE" for n in names)
    lines = [f"| method | k | {head} | mean macro-F1 | mean ECE | ECE floor | slowest fit (s) | runs per set |",
             "|---|---|" + "---|" * len(names) + "---|---|---|---|---|"]
    for row in summary:
        cells = " | ".join(f"{100 * row['per_set'][n]['macro_f1']:.1f} / {row['per_set'][n]['ece']:.3f}"
                           if n in row["per_set"] else "-" for n in names)
        runs = max(v["runs"] for v in row["per_set"].values())
        lines.append(f"| {row['method']} | {row['k'] or '-'} | {cells} | {100 * row['mean_macro_f1']:.1f} | "
                     f"{row['mean_ece']:.3f} | {row['mean_ece_floor']:.3f} | {row['max_seconds']:.1f} | {runs} |")
    return "\n".join(lines)


def goal(summary: list[dict]) -> str:
    zero = next(r for r in summary if r["method"] == "zero-shot")
    cal = next((r for r in summary if r["method"] == "calibrate" and r["k"] == 8), None)
    if cal is None:
        return ""
    gain = 100 * (cal["mean_macro_f1"] - zero["mean_macro_f1"])
    ratio = cal["mean_ece"] / zero["mean_ece"]
    met = gain >= GOAL_POINTS and ratio <= GOAL_ECE_RATIO and cal["max_seconds"] < GOAL_SECONDS
    return (f"\nGoal (k=8: >= +{GOAL_POINTS:.0f} macro-F1 points, ECE at most x{GOAL_ECE_RATIO}, < {GOAL_SECONDS:.0f} s): "
            f"{gain:+.1f} points, ECE x{ratio:.2f}, slowest calibrate {cal['max_seconds']:.1f} s -> "
            f"{'met' if met else 'NOT met'}")


def plot(results: list[dict], out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("skip plot: matplotlib is not installed (pip install 'udtc[plot]')")
        return None
    columns = min(3, len(results))
    rows = -(-len(results) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4 * rows), squeeze=False)
    for ax, result in zip(axes.flat, results):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
        for name, diagram in result["reliability"].items():
            ax.plot(diagram["confidence"], diagram["accuracy"], marker="o", label=name)
        ax.set_title(result["dataset"])
        ax.set_xlabel("top probability (confidence)")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle("Reliability on the TEST halves: zero-shot vs calibrate (k=8, seed 0), default model (cosine MiniLM)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.calibration", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: trec6, k=4, 1 seed, a tenth of the halves, 1 epoch")
    parser.add_argument("--datasets", nargs="+", default=list(UNSEEN), choices=list(UNSEEN))
    parser.add_argument("--seeds", type=int, default=5, help="calibration seeds per k (finetune: seed 0 only)")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--no-finetune", action="store_true")
    parser.add_argument("--model", choices=sorted(COSINE_MODELS), default="cosine-minilm",
                        help="plain cosine MiniLM (COSINE_MINILM) or the default model (TUNED_MINILM)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default=None, help="results file stem for a partial run (e.g. one set's fit times); "
                        "it does not redraw the docs' plot")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    shots = SHOTS
    if args.quick:
        args.datasets, args.seeds, args.finetune_epochs, shots = ["trec6"], 1, 1, (4,)
    started = time.perf_counter()
    results = [run_dataset(s, shots=shots, seeds=list(range(args.seeds)), finetune_epochs=args.finetune_epochs,
                           finetune=not args.no_finetune, model=COSINE_MODELS[args.model])
               for s in label_sets(args.datasets, quick=args.quick)]
    summary = summarise(results, shots)
    text = table(summary, args.datasets) + goal(summary)
    print(text)
    stem = "calibration_default" if args.model == "default" else "calibration"
    name = (args.out or stem) + ("_quick" if args.quick else "")
    path = write_results(name, {"args": vars(args), "shots": list(shots), "summary": summary, "results": results,
                                "total_s": round(time.perf_counter() - started, 1)}, text)
    folder = DOCS_IMG if not args.quick else path.parent / "raw" / "img_quick"
    image = None if args.out or args.model == "default" else plot(results, folder / f"{name}.png")  # the docs' plot
    print(f"wrote {path}" + (f" and {image}" if image else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
