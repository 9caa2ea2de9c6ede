"""Shared helpers for the benchmark scripts: machine description, timing, result files."""

from __future__ import annotations

import json
import math
import os
import platform
import random
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from udtc.defaults import COSINE_MINILM, TUNED_MINILM

RESULTS = Path(__file__).parent / "results"
#: ``--model`` of the benchmarks that measure a cosine model: the shipped default or plain all-MiniLM-L6-v2
COSINE_MODELS = {"default": TUNED_MINILM, "cosine-minilm": COSINE_MINILM}
_WORDS = ("the a market team city government film phone rain doctor game season price vote story song school "
          "new old big small quick late early strong weak good bad played announced raised closed opened won "
          "lost said reported expected found made took gave shows plans rules over under after before during").split()


def machine() -> dict:
    import torch

    cpu, flags = platform.processor() or platform.machine(), []
    if Path("/proc/cpuinfo").exists():  # Linux: the model name and the flags bfloat16 speed depends on
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()[:40] if ":" in line)
        cpu = info.get("model name\t", cpu).strip()
        flags = [f for f in info.get("flags\t\t", "").split() if f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile")]
    return {"platform": platform.platform(), "processor": cpu, "cpu_flags": flags,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "load_average": [round(x, 2) for x in os.getloadavg()]}


def synthetic_texts(n: int, words: int | tuple[int, int], seed: int = 0) -> list[str]:
    """``n`` seeded pseudo-sentences of ``words`` words: for throughput, not accuracy.

    ``words=(low, high)`` draws each text's length log-uniformly from that range, as real corpora mix
    short and long texts (what length-sorted batching is for).
    """
    rng = random.Random(seed)
    lengths = ([round(math.exp(rng.uniform(math.log(words[0]), math.log(words[1])))) for _ in range(n)]
               if isinstance(words, tuple) else [words] * n)
    return [" ".join(rng.choice(_WORDS) for _ in range(k)).capitalize() + "." for k in lengths]


def mean_words(words: int | tuple[int, int]) -> float:
    """Expected words per text of :func:`synthetic_texts` (log-uniform mean for a range)."""
    if not isinstance(words, tuple):
        return float(words)
    low, high = words
    return (high - low) / math.log(high / low) if high > low else float(low)


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (ru_maxrss)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_results(name: str, payload: dict, table: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n", encoding="utf-8")
    (RESULTS / f"{name}.md").write_text(table + "\n", encoding="utf-8")
    return path
