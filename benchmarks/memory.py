"""Peak resident memory (RSS) of every backend classifying many texts against 500 labels.

Each backend runs alone in a fresh process (``--child``), on the model ``benchmarks.speed`` times
for it (real weights where reachable), with 1 torch thread:

1. load the model and classify one text against the 500 labels (loads the weights, fills the
   label cache): "RSS after load" is ``VmRSS`` then, "load peak" ``ru_maxrss`` (getrusage) then;
2. reset the peak (Linux ``/proc/self/clear_refs``) and stream the texts through
   ``Classifier.classify_iter`` (``chunk_size`` texts per ``classify`` call, batch size 32),
   keeping only each prediction's top label, as a job writing results to a file would;
3. after every chunk record the texts done, ``VmRSS`` and the peak since the reset (``VmHWM``).

"Peak RSS" is the larger of the load peak and the classification peak; "growth" is the peak after
the last chunk minus the peak after the first one: ~0 means memory does not grow with the number
of texts once batches stream. The texts are ``benchmarks.common.synthetic_texts`` of 8-200 words
(log-uniform, seed 0); the labels are 500 distinct topic phrases.

cosine and sce classify all 10,000 texts. The pair-wise backends cannot do 10,000 x 500 on one
CPU core in a benchmark's time (nli runs 5,000,000 text-label pairs; llm-prompt 500 answer
continuations per text; gliclass and llm-head read the whole label set with every text), so they
classify as many texts as ``--budget`` seconds allow (at most their ``n``) in smaller chunks, and
the table shows the peak after each chunk: flat growth there is the claim that 10,000 texts would
need the same peak.

    python -m benchmarks.memory                       # every backend (~30 min here)
    python -m benchmarks.memory --backends cosine sce
    python -m benchmarks.memory --quick               # CI smoke test: tiny random models, 8 texts x 20 labels
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, synthetic_texts, write_results

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("cosine", "sce", "gliclass", "nli", "llm-head", "llm-prompt")
N_LABELS = 500
FULL = 10_000  # texts of the full measurement (cosine, sce): never cut by --budget
WORDS = (8, 200)
#: texts at most and texts per classify call, per backend (the pair-wise ones stop at --budget seconds)
PLAN = {"cosine": (FULL, 1024), "sce": (FULL, 1024), "gliclass": (200, 10), "nli": (32, 4),
        "llm-head": (200, 10), "llm-prompt": (16, 2)}
_TOPICS = ["business", "sports", "politics", "technology", "health", "science", "travel", "food", "music", "weather",
           "finance", "law", "crime", "education", "art", "history", "religion", "fashion", "cars", "games", "movies",
           "books", "family", "pets", "gardening", "housing", "jobs", "energy", "climate", "space", "medicine",
           "shopping"]
_FORMS = ("{}", "{} news", "questions about {}", "complaints about {}", "{} advice", "{} reviews", "opinions on {}",
          "{} events", "jokes about {}", "{} research", "{} prices", "local {}", "{} scandals", "{} history",
          "{} for beginners", "the future of {}")
LABELS = [form.format(topic) for form in _FORMS for topic in _TOPICS][:N_LABELS]  # 500 distinct labels


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def child(subject_json: str, n: int, chunk_size: int, budget: float, n_labels: int, words: Any) -> dict[str, Any]:
    import torch

    from benchmarks.speed import Subject
    from udtc import Classifier

    torch.set_num_threads(1)
    subject = Subject(**json.loads(subject_json))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = Classifier.from_pretrained(subject.path, backend=subject.backend, device="cpu")
    texts, labels = synthetic_texts(n, tuple(words) if isinstance(words, list) else words), LABELS[:n_labels]
    clf.classify(texts[:1], labels, progress=False)
    loaded, load_peak = _status_mb("VmRSS"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    points: list[dict[str, float]] = []
    done, start, top = 0, time.perf_counter(), {}
    for prediction in clf.classify_iter(texts, labels, chunk_size=chunk_size, batch_size=32):
        top[prediction.label] = top.get(prediction.label, 0) + 1  # keep the answer, drop the prediction
        done += 1
        if done % chunk_size == 0 or done == n:
            points.append({"texts": done, "seconds": round(time.perf_counter() - start, 1),
                           "rss_mb": round(_status_mb("VmRSS"), 1), "peak_mb": round(_status_mb("VmHWM"), 1)})
            if n < FULL and time.perf_counter() - start > budget:
                break
    return {"backend": subject.backend, "model": subject.model, "labels": len(labels), "texts_asked": n,
            "texts_done": done, "chunk_size": chunk_size, "words": words, "loaded_rss_mb": round(loaded, 1),
            "load_peak_mb": round(load_peak, 1), "points": points,
            "peak_mb": round(max(load_peak, points[-1]["peak_mb"]), 1),
            "growth_mb": round(points[-1]["peak_mb"] - points[0]["peak_mb"], 1), "load_average": os.getloadavg()}


def run(backend: str, folder: Path, quick: bool, budget: float, words: Any) -> dict[str, Any]:
    from benchmarks.speed import subject

    n, chunk, n_labels = (8, 4, 20) if quick else (*PLAN[backend], N_LABELS)
    subj = subject(backend, folder / backend, quick)
    cmd = [sys.executable, "-m", "benchmarks.memory", "--child", json.dumps(asdict(subj)), str(n), str(chunk),
           str(budget), str(n_labels), json.dumps(words)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"memory child for {backend} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| backend | model | words per text | texts x labels | chunk | RSS after load (MB) | peak RSS (MB) "
             "| growth first -> last chunk (MB) | peak after each chunk (MB) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        series = ", ".join(f"{p['texts']}: {p['peak_mb']:.0f}" for p in r["points"])
        if len(r["points"]) > 6:
            first, last = r["points"][0], r["points"][-1]
            series = f"{first['texts']}: {first['peak_mb']:.0f} ... {last['texts']}: {last['peak_mb']:.0f}"
        words = "-".join(map(str, r.get("words", WORDS))) if not isinstance(r.get("words"), int) else r["words"]
        lines.append(f"| {r['backend']} | {r['model']} | {words} | {r['texts_done']:,} x {r['labels']} | {r['chunk_size']} | "
                     f"{r['loaded_rss_mb']:.0f} | {r['peak_mb']:.0f} | {r['growth_mb']:+.0f} | {series} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--budget", type=float, default=300.0,
                        help="seconds of classification per pair-wise backend (it stops after the chunk running then)")
    parser.add_argument("--words", type=int, nargs="+", default=None, metavar="N",
                        help="words per text: N, or LOW HIGH drawn log-uniformly (default 8 200)")
    parser.add_argument("--quick", action="store_true", help="CI smoke test: tiny random models, results *_quick")
    parser.add_argument("--child", nargs=6, metavar=("SUBJ", "N", "CHUNK", "S", "L", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child(args.child[0], int(args.child[1]), int(args.child[2]), float(args.child[3]), int(args.child[4]),
                       json.loads(args.child[5]))
        print(json.dumps(result))
        return result
    rows = []
    with tempfile.TemporaryDirectory(prefix="udtc-memory-") as tmp:
        for backend in args.backends:
            started = time.perf_counter()
            words = list(WORDS) if not args.words else args.words[0] if len(args.words) == 1 else args.words[:2]
            rows.append(run(backend, Path(tmp), args.quick, args.budget, words))
            print(f"{backend}: peak {rows[-1]['peak_mb']:.0f} MB, {rows[-1]['texts_done']} texts, "
                  f"{time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.1f}", flush=True)
    name = "memory" + ("_quick" if args.quick else "")
    command = "python -m benchmarks.memory " + " ".join(argv if argv is not None else sys.argv[1:])
    previous = RESULTS / f"{name}.json"  # a run of some backends keeps the other backends' rows
    if previous.exists() and set(args.backends) != set(BACKENDS):
        old = json.loads(previous.read_text(encoding="utf-8"))
        kept = [r for r in old["results"] if r["backend"] not in args.backends]
        rows = sorted(kept + rows, key=lambda r: BACKENDS.index(r["backend"]))
    for r in rows:
        r.setdefault("command", command)
    text = table(rows)
    print(text)
    payload = {"command": "python -m benchmarks.memory (rows: the command each names)", "threads": 1, "batch_size": 32,
               "results": rows}
    write_results(name, payload, text)
    return payload


if __name__ == "__main__":
    main()
