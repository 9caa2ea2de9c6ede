"""Load test of ``udtc serve``: N concurrent clients over loopback against calling ``classify`` one
request at a time in-process, on the same model, texts and label sets, in the same run.

Each request is one text (8-40 words, seeded synthetic) and a label set (4-6 labels); two
workloads: every request with the same label set (one taxonomy per service), and requests spread
over four label sets. The server is ``python -m udtc.cli serve MODEL`` in a subprocess on
127.0.0.1; clients are asyncio tasks (httpx) in this process, each sending its next request when
the previous one is answered (closed loop). Per client count: latency p50/p95/p99 and throughput
(requests/s over the wall time), each level bounded by ``--requests`` and ``--seconds``. The
in-process baseline (one ``classify(text, labels)`` call after another, same torch threads) runs
before and after the served levels; ratios are against the mean of its two runs. The same requests
classified ``--max-batch`` per ``classify`` call in-process (no HTTP) show what batching alone can gain. A sample of
served answers is compared with in-process ``classify`` (max |score difference| reported).

    python -m benchmarks.serve_load                      # default model, 1/8/32 clients, 1 and 4 label sets (~5 min)
    python -m benchmarks.serve_load --clients 1 8 32 64 --seconds 60
    python -m benchmarks.serve_load --quick              # CI smoke test: tiny random model, 1 and 4 clients
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from benchmarks.common import synthetic_texts, write_results

REPO = Path(__file__).resolve().parent.parent
LABEL_SETS = [["sports", "politics", "business", "technology"],
              ["positive", "negative", "neutral", "mixed", "question"],
              ["weather", "health", "travel", "food", "music", "film"],
              ["complaint", "praise", "request", "spam"]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(latencies: list[float], wall: float) -> dict:
    return {"requests": len(latencies), "seconds": round(wall, 3), "throughput_rps": round(len(latencies) / wall, 2),
            "p50_ms": round(1000 * percentile(latencies, 50), 2), "p95_ms": round(1000 * percentile(latencies, 95), 2),
            "p99_ms": round(1000 * percentile(latencies, 99), 2),
            "mean_ms": round(1000 * statistics.fmean(latencies), 2)}


def workload(n: int, label_sets: int = len(LABEL_SETS)) -> list[tuple[str, list[str]]]:
    texts = synthetic_texts(n, (8, 40), seed=1)
    return [(text, LABEL_SETS[i % label_sets]) for i, text in enumerate(texts)]


def in_process(clf, requests: list[tuple[str, list[str]]], seconds: float) -> dict:
    latencies, start = [], time.perf_counter()
    for text, labels in requests:
        t = time.perf_counter()
        clf.classify(text, labels)
        latencies.append(time.perf_counter() - t)
        if time.perf_counter() - start > seconds:
            break
    return summary(latencies, time.perf_counter() - start)


def in_process_batched(clf, requests: list[tuple[str, list[str]]], seconds: float, max_batch: int) -> dict:
    """The ceiling for batching: the same requests, ``max_batch`` per ``classify`` call, no HTTP."""
    done, start = 0, time.perf_counter()
    for i in range(0, len(requests), max_batch):
        chunk = requests[i : i + max_batch]
        clf.classify([text for text, _ in chunk], [labels for _, labels in chunk], batch_size=max_batch, progress=False)
        done += len(chunk)
        if time.perf_counter() - start > seconds:
            break
    wall = time.perf_counter() - start
    return {"requests": done, "seconds": round(wall, 3), "throughput_rps": round(done / wall, 2)}


async def served(base: str, requests: list[tuple[str, list[str]]], clients: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    queue = iter(requests)
    start = time.perf_counter()

    async def client(http: httpx.AsyncClient) -> None:
        for text, labels in queue:  # one shared iterator: each request is sent once
            if time.perf_counter() - start > seconds:
                return
            t = time.perf_counter()
            r = await http.post(f"{base}/classify", json={"texts": text, "labels": labels})
            if r.status_code != 200:
                errors.append(f"{r.status_code} {r.text[:200]}")
                continue
            latencies.append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    result = summary(latencies, time.perf_counter() - start)
    result["errors"] = len(errors)
    if errors:
        result["first_error"] = errors[0]
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str | None, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    cmd = [sys.executable, "-m", "udtc.cli", "serve", *([model] if model else []), "--port", str(port),
           "--threads", str(args.threads), "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
           "--max-queue", "4096", "--log-level", "warning",
           *(["--switch-interval-ms", str(args.switch_interval_ms)] if args.switch_interval_ms else [])]
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"udtc serve exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("udtc serve did not become ready within 180 s")


def max_difference(base: str, clf, requests: list[tuple[str, list[str]]]) -> float:
    import httpx

    worst = 0.0
    for text, labels in requests:
        got = httpx.post(f"{base}/classify", json={"texts": text, "labels": labels}, timeout=60).json()["predictions"][0]
        want = clf.classify(text, labels)
        assert list(got["scores"]) == list(want.scores) and got["label"] == want.label, (got, want)
        worst = max(worst, *(abs(got["scores"][k] - v) for k, v in want.scores.items()))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="folder or Hub id (default: the default model)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=2000, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=20.0, help="at most this long per level")
    parser.add_argument("--label-sets", type=int, nargs="+", default=[1, 4], choices=range(1, len(LABEL_SETS) + 1),
                        help="workloads: requests spread over this many label sets")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, server and baseline alike")
    parser.add_argument("--switch-interval-ms", type=float, default=None,
                        help="the server's GIL switch interval (default: Python's)")
    parser.add_argument("--quick", action="store_true", help="CI smoke test: tiny random model, 1 and 4 clients")
    args = parser.parse_args(argv)

    import torch

    from udtc import Classifier

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*exceeded the model's maximum length")  # tiny --quick model
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if args.quick:
            sys.path.insert(0, str(REPO / "tests"))
            from factories import FACTORIES  # tests/factories.py

            model = str(FACTORIES["cosine"](Path(tmp) / "cosine"))
            args.clients, args.requests, args.seconds, args.label_sets = [1, 4], 40, 10.0, [2]
        clf = Classifier.from_pretrained(model)
        for text, labels in workload(8):  # warm-up
            clf.classify(text, labels)
        proc, base = start_server(model, args)
        runs = {}
        try:
            asyncio.run(served(base, workload(32), 4, args.seconds))  # warm-up
            for n_sets in args.label_sets:
                requests = workload(args.requests, n_sets)
                baseline = [in_process(clf, requests, args.seconds)]
                levels = {}
                for clients in args.clients:
                    levels[clients] = asyncio.run(served(base, requests, clients, args.seconds))
                    print(f"{n_sets} label set(s), {clients:>3} clients: {levels[clients]}", file=sys.stderr)
                baseline.append(in_process(clf, requests, args.seconds))
                ceiling = in_process_batched(clf, requests, args.seconds, args.max_batch)
                one_at_a_time = statistics.fmean(b["throughput_rps"] for b in baseline)
                for level in levels.values():
                    level["vs_one_at_a_time"] = round(level["throughput_rps"] / one_at_a_time, 2)
                ceiling["vs_one_at_a_time"] = round(ceiling["throughput_rps"] / one_at_a_time, 2)
                runs[n_sets] = {"in_process": baseline, "one_at_a_time_rps": round(one_at_a_time, 2),
                                "in_process_batched": ceiling, "served": levels}
            difference = max_difference(base, clf, workload(24))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)

    rows = ["| label sets | setup | clients | requests | throughput (req/s) | vs one-at-a-time | p50 ms | p95 ms | p99 ms |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n_sets, run in runs.items():
        for name, b in zip(("before", "after"), run["in_process"]):
            rows.append(f"| {n_sets} | in-process `classify`, one at a time ({name}) | 1 | {b['requests']} | "
                        f"{b['throughput_rps']:.1f} | {b['throughput_rps'] / run['one_at_a_time_rps']:.2f} | "
                        f"{b['p50_ms']:.1f} | {b['p95_ms']:.1f} | {b['p99_ms']:.1f} |")
        c = run["in_process_batched"]
        rows.append(f"| {n_sets} | in-process `classify`, {args.max_batch} requests per call (no HTTP: the batching "
                    f"ceiling) | - | {c['requests']} | {c['throughput_rps']:.1f} | {c['vs_one_at_a_time']:.2f} | - | - | - |")
        for clients, r in run["served"].items():
            rows.append(f"| {n_sets} | `udtc serve` over loopback | {clients} | {r['requests']} | {r['throughput_rps']:.1f} | "
                        f"**{r['vs_one_at_a_time']:.2f}** | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} |")
    errors = sum(r["errors"] for run in runs.values() for r in run["served"].values())
    switch = f" --switch-interval-ms {args.switch_interval_ms:g}" if args.switch_interval_ms else ""
    rows.append(f"\nmodel: {model or 'the default model'}; one text (8-40 words) per request; torch threads {args.threads}; "
                f"--max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms:g}{switch}; each level <= {args.requests} "
                f"requests and <= {args.seconds:g} s; vs one-at-a-time: over the mean of the in-process runs before and "
                f"after; max |served - in-process| score {difference:.2e}; HTTP errors {errors}")
    table = "\n".join(rows)
    print(table)
    write_results("serve_load" + ("_quick" if args.quick else ""),
                  {"model": model or "default", "quick": args.quick, "threads": args.threads,
                   "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
                   "switch_interval_ms": args.switch_interval_ms, "requests": args.requests,
                   "seconds": args.seconds, "runs": {str(k): v for k, v in runs.items()},
                   "max_score_difference": difference, "load_average_before_after": [load_before, os.getloadavg()]},
                  table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
