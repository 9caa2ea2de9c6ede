"""Plots for docs/benchmarks.md from the result files of ``benchmarks.accuracy`` and ``benchmarks.speed``.

matplotlib is optional (``pip install "udtc[plot]"``): without it, or without a result file, the
plot is skipped with a note and the command still succeeds.

    python -m benchmarks.plot            # docs/img/accuracy.png, docs/img/throughput.png
    python -m benchmarks.plot --quick    # from the *_quick results, into benchmarks/results/raw/img_quick/ (git-ignored)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS

DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
QUICK_IMG = RESULTS / "raw" / "img_quick"  # raw/ is git-ignored


def _read(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        print(f"skip: {path} does not exist (run python -m benchmarks.{name.removesuffix('_quick')} first)")
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def plot_accuracy(result: dict[str, Any], out: Path) -> Path:
    import matplotlib.pyplot as plt
    import numpy as np

    from benchmarks.accuracy import SHORT

    rows = result["results"]
    names = list(result["datasets"])
    labels = [SHORT.get(n, n) for n in names] + ["mean"]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.3 * len(labels)), 7.5), sharex=True)
    width = 0.8 / max(1, len(rows))
    x = np.arange(len(labels))
    for ax, key, mean_key, title in ((axes[0], "accuracy", "mean_accuracy", "Accuracy"),
                                     (axes[1], "macro_f1", "mean_macro_f1", "Macro-F1")):
        for i, row in enumerate(rows):
            values = [row["per_dataset"].get(n, {}).get(key, np.nan) for n in names] + [row[mean_key]]
            template = "raw label" if row["template"] == "{}" else row["template"]
            name = f"{row['model']} ({template})" if row["backend"] == "cosine" else row["model"]
            if row.get("trained_on"):  # not zero-shot there: say so in the legend
                name += " - trained on " + ", ".join(SHORT.get(n, n) for n in row["trained_on"])
            ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=name)
        ax.set_ylabel(title)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Zero-shot, up to {result['n']} rows per data set (seeded stratified samples)")
    handles, names_ = axes[0].get_legend_handles_labels()
    fig.legend(handles, names_, fontsize=8, ncol=2, loc="lower center")
    axes[1].set_xticks(x, labels, rotation=20)
    fig.tight_layout(rect=(0, 0.04 + 0.025 * ((len(rows) + 1) // 2), 1, 1))
    path = out / "accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_throughput(result: dict[str, Any], out: Path) -> Path:
    import matplotlib.pyplot as plt

    lengths = list(result["lengths"])
    fig, axes = plt.subplots(1, len(lengths), figsize=(6 * len(lengths), 4.5), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, length in zip(axes, lengths):
        for i, subject in enumerate(result["subjects"]):
            rows = sorted((r for r in result["rows"] if r["backend"] == subject["backend"] and r["length"] == length),
                          key=lambda r: r["labels"])
            if not rows:
                continue
            color = colors[i % len(colors)]
            counts = [r["labels"] for r in rows]
            ax.plot(counts, [r["udtc_texts_per_s"] for r in rows], "o-", color=color, label=f"{subject['backend']} (udtc)")
            if subject.get("peer"):
                ax.plot(counts, [r["peer_texts_per_s"] for r in rows], "s--", color=color, alpha=0.7,
                        label=f"{subject['backend']}: {subject['peer']}")
        ax.set_xscale("log", base=2)
        ticks = sorted({r["labels"] for r in result["rows"]})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_yscale("log")
        ax.set_xlabel("labels")
        words = result["lengths"][length]
        ax.set_title(f"{length} texts ({words[0]}-{words[1]} words)" if isinstance(words, list)
                     else f"{length} texts (~{words} words)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"texts / s ({result['threads']} thread{'s' if result['threads'] != 1 else ''})")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    path = out / "throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plot", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="plot the *_quick results into benchmarks/results/raw/img_quick")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default {DOCS_IMG})")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("matplotlib") is None:
        print("skip: matplotlib is not installed (pip install 'udtc[plot]'); no plots written")
        return []
    import matplotlib

    matplotlib.use("Agg")
    suffix = "_quick" if args.quick else ""
    out = args.out or (QUICK_IMG if args.quick else DOCS_IMG)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in (("accuracy", plot_accuracy), ("speed", plot_throughput)):
        result = _read(name + suffix)
        if result is not None:
            written.append(plot(result, out))
            print(f"wrote {written[-1]}")
    return written


if __name__ == "__main__":
    main()
