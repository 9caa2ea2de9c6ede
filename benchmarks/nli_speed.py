"""NLI backend vs transformers' zero-shot-classification pipeline: same model, texts, batch size, one run.

The model is a random BERT cross-encoder the size of MiniLM-L6 (hidden 384, 6 layers, 12 heads,
FFN 1536, MiniLM's 30,522-token uncased vocabulary, MNLI labels), built in code. udtc
(``Classifier.classify``) and the pipeline run the *same* model object at the same ``batch_size``
(pairs per forward pass), timed alternately; ratio = udtc texts/s / pipeline texts/s. Texts mix
10, 20, 40 and 80 words; with one label both score it multi-label (what the pipeline does for
a single label anyway). The max |p_udtc - p_pipeline| over the timed run is reported too.

"in forward" is the share of wall time spent inside the model's forward (hooks), "padding" the
share of padded positions among the tokens fed to the model.

Memory (Linux): each system classifies in a fresh process. After loading the model and one
warm-up call, the process's peak resident set size is reset (``/proc/self/clear_refs``); "peak
RSS" is ``VmHWM`` after classifying, "over load" that peak minus the RSS before classifying,
i.e. what classifying cost on top of the loaded weights.

    python -m benchmarks.nli_speed            # default: ~768 pairs per point, 3 runs (10-25 min here)
    python -m benchmarks.nli_speed --quick    # CI smoke test (seconds)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import peak_rss_mb, synthetic_texts, write_results

_LABEL_WORDS = ["business", "entertainment", "politics", "sports", "technology", "health", "science", "travel", "food", "music", "weather", "finance", "law", "crime", "education", "art", "history", "religion", "fashion", "cars", "games", "movies", "books", "family"]
_TEXT_WORDS = (10, 20, 40, 80)


def build_model(folder: Path, quick: bool) -> Path:
    """Save a random BERT NLI cross-encoder (MiniLM-L6-sized unless ``quick``) with MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from udtc.defaults import COSINE_MINILM
    from udtc.hub import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve(COSINE_MINILM))  # all-MiniLM-L6-v2
    size = ({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 256} if quick else
            {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12, "intermediate_size": 1536})
    label2id = {"entailment": 0, "neutral": 1, "contradiction": 2}
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512, label2id=label2id,
                        id2label={i: n for n, i in label2id.items()}, **size)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_texts(n: int) -> list[str]:
    return [synthetic_texts(1, _TEXT_WORDS[i % len(_TEXT_WORDS)], seed=i)[0] for i in range(n)]


def make_labels(n: int) -> list[str]:
    words = _LABEL_WORDS
    labels = [*words, *(f"{a} and {b}" for a in words for b in words if a != b)]
    return labels[:n]


def load(folder: Path, threads: int | None):
    import torch
    from transformers import pipeline

    from udtc import Classifier

    if threads:
        torch.set_num_threads(threads)
    clf = Classifier.from_pretrained(folder, backend="nli", device="cpu")
    pipe = pipeline("zero-shot-classification", model=clf.backend.model, tokenizer=clf.backend.tokenizer, device="cpu")
    return clf, pipe


def run_udtc(clf, texts, labels, batch_size):
    # one label: multi-label, which is also what the pipeline computes for a single label
    preds = clf.classify(texts, labels, batch_size=batch_size, progress=False, multi_label=len(labels) == 1)
    return [p.scores for p in preds]


def run_pipeline(pipe, texts, labels, batch_size):
    out = pipe(texts, candidate_labels=labels, batch_size=batch_size, multi_label=len(labels) == 1)
    return [dict(zip(o["labels"], o["scores"])) for o in out]


class ForwardMeter:
    """Time spent inside the model's forward, and padded vs real tokens it was given."""

    def __init__(self, model):
        self.seconds, self.tokens, self.real = 0.0, 0, 0
        model.register_forward_pre_hook(self._pre, with_kwargs=True)
        model.register_forward_hook(self._post)

    def _pre(self, module, args, kwargs):
        self.tokens += kwargs["input_ids"].numel()
        self.real += int(kwargs["attention_mask"].sum())
        self._start = time.perf_counter()

    def _post(self, module, args, output):
        self.seconds += time.perf_counter() - self._start

    def reset(self) -> None:
        self.seconds, self.tokens, self.real = 0.0, 0, 0


def speed(clf, pipe, meter: ForwardMeter, n_labels: int, pairs: int, batch_size: int, repeats: int) -> dict:
    labels = make_labels(n_labels)
    texts = make_texts(max(4, pairs // n_labels))
    run_udtc(clf, texts[:2], labels[:8], batch_size)  # warm-up
    run_pipeline(pipe, texts[:2], labels[:8], batch_size)
    times: dict[str, list[float]] = {"udtc": [], "pipeline": []}
    forward: dict[str, float] = {}
    padding: dict[str, float] = {}
    diff = 0.0
    for _ in range(repeats):  # alternate, so both see the same machine load
        for name, fn, target in (("udtc", run_udtc, clf), ("pipeline", run_pipeline, pipe)):
            meter.reset()
            start = time.perf_counter()
            scores = fn(target, texts, labels, batch_size)
            times[name].append(time.perf_counter() - start)
            forward[name] = meter.seconds / times[name][-1]
            padding[name] = 1 - meter.real / meter.tokens
            if name == "udtc":
                ours = scores
            else:
                diff = max(diff, max(abs(a[k] - b[k]) for a, b in zip(ours, scores) for k in labels))
    t_udtc, t_pipe = statistics.median(times["udtc"]), statistics.median(times["pipeline"])
    return {"labels": n_labels, "texts": len(texts), "pairs": len(texts) * n_labels,
            "udtc_texts_per_s": len(texts) / t_udtc, "pipeline_texts_per_s": len(texts) / t_pipe,
            "ratio": t_pipe / t_udtc, "max_abs_prob_diff": diff, "udtc_s": times["udtc"], "pipeline_s": times["pipeline"],
            "udtc_forward_share": forward["udtc"], "pipeline_forward_share": forward["pipeline"],
            "udtc_padding": padding["udtc"], "pipeline_padding": padding["pipeline"]}


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def memory_child(folder: str, system: str, n_labels: int, n_texts: int, batch_size: int, threads: int | None) -> None:
    clf, pipe = load(Path(folder), threads)
    labels, texts = make_labels(n_labels), make_texts(n_texts)
    fn, target = (run_udtc, clf) if system == "udtc" else (run_pipeline, pipe)
    fn(target, texts[:1], labels[:2], batch_size)
    loaded = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak (VmHWM) to the current RSS
    fn(target, texts, labels, batch_size)
    peak = _status_mb("VmHWM")
    print(json.dumps({"system": system, "labels": n_labels, "texts": n_texts, "batch_size": batch_size,
                      "peak_rss_mb": peak, "loaded_rss_mb": loaded, "over_load_mb": peak - loaded,
                      "process_peak_rss_mb": peak_rss_mb()}))


def memory(folder: Path, system: str, n_labels: int, n_texts: int, batch_size: int, threads: int | None) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.nli_speed", "--memory-child", str(folder), system, str(n_labels),
           str(n_texts), "--batch-size", str(batch_size), "--threads", str(threads or 0)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per forward pass, both systems")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=768, help="about this many pairs per speed point")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, both systems (default 1: stable timings on a shared CPU; 0 = torch's default)")
    parser.add_argument("--memory-child", nargs=4, metavar=("FOLDER", "SYSTEM", "LABELS", "TEXTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        folder, system, n_labels, n_texts = args.memory_child
        memory_child(folder, system, int(n_labels), int(n_texts), args.batch_size, args.threads)
        return {}

    import torch

    label_counts = [1, 8] if args.quick else [1, 8, 32, 128]
    memory_points = [(16, 2)] if args.quick else [(128, 4), (500, 4)]
    pairs, repeats = (64, 1) if args.quick else (args.pairs, args.repeats)
    threads_before = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "nli", args.quick)
        clf, pipe = load(folder, args.threads)
        meter = ForwardMeter(clf.backend.model)
        rows = []
        for n in label_counts:
            rows.append(speed(clf, pipe, meter, n, pairs, args.batch_size, repeats))
            print(f"{n} labels: ratio {rows[-1]['ratio']:.2f}", file=sys.stderr, flush=True)
        mem = [memory(folder, system, n, t, args.batch_size, args.threads)
               for n, t in memory_points for system in ("udtc", "pipeline")]
        threads_used = torch.get_num_threads()
        torch.set_num_threads(threads_before)  # main() may run inside another process (tests)

    header = ("| labels | texts | pairs | udtc (texts/s) | pipeline (texts/s) | ratio | in forward udtc / pipeline "
              "| padding udtc / pipeline | max abs diff p |")
    table = [header, "|---|---|---|---|---|---|---|---|---|"]
    table += [f"| {r['labels']} | {r['texts']} | {r['pairs']} | {r['udtc_texts_per_s']:.2f} | "
              f"{r['pipeline_texts_per_s']:.2f} | {r['ratio']:.2f} | {r['udtc_forward_share']:.0%} / "
              f"{r['pipeline_forward_share']:.0%} | {r['udtc_padding']:.0%} / {r['pipeline_padding']:.0%} | "
              f"{r['max_abs_prob_diff']:.1e} |" for r in rows]
    table += ["", "| system | labels | texts | peak RSS (MB) | over load (MB) |", "|---|---|---|---|---|"]
    table += [f"| {m['system']} | {m['labels']} | {m['texts']} | {m['peak_rss_mb']:.0f} | {m['over_load_mb']:.0f} |"
              for m in mem]
    print("\n".join(table))
    model = "random BERT 64x2 (quick)" if args.quick else "random BERT, MiniLM-L6 size (384x6, 12 heads, FFN 1536)"
    write_results("nli_speed" + ("_quick" if args.quick else ""),
                  {"model": model, "batch_size": args.batch_size, "repeats": repeats, "threads": threads_used,
                   "pairs_per_point": pairs,
                   "memory_measure": "VmHWM after resetting it post-load (clear_refs 5), fresh process per point; "
                                     "over_load = that peak minus VmRSS after load + warm-up",
                   "rows": rows, "memory": mem}, "\n".join(table))
    return {"rows": rows, "memory": mem}


if __name__ == "__main__":
    main()
