"""Model soups of LoRA candidates on the unseen-label protocol (issue #13).

A uniform soup averages the weights of models fine-tuned from one base ("Model soups: averaging weights of
multiple fine-tuned models improves accuracy without increasing inference time", Wortsman et al., ICML 2022,
arXiv:2203.05482, the uniform soup f(x, (1/k) sum_i theta_i)). Recipes here trade gains between kinds of label
set (an MPNet teacher: software domains and commands up, question types down), and averaging models that
fail differently is what soups are for.

The soup of k LoRA adapters on one base is itself one LoRA adapter, exactly:

    sum_i w_i s_i B_i A_i = [w_1 s_1 B_1 | ... | w_k s_k B_k] [A_1; ...; A_k]      (s_i = lora_alpha_i / r_i)

so it is saved with rank sum_i r_i and scale 1 (lora_alpha = r), and udtc loads it like any adapter (folded
into the weights at load: the soup scores at the base model's speed).

    python -m benchmarks.soup --candidates udtc/models/cosine-minilm-tuned benchmarks/results/candidates/X_seed1/model \
        --tag soup_X          # writes results/candidates/soup_X/model and results/soup_X.{json,md}
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

from benchmarks.distill import CANDIDATES
from udtc.adapters import plain_lora_factors
from udtc.config import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CONFIG_NAME, read_json

COMMAND = "python -m benchmarks.soup"


def soup_adapter(folders: list[Path], weights: list[float], out: Path, dtype: torch.dtype = torch.float32) -> None:
    """Write to ``out`` the LoRA adapter whose change is sum_i weights[i] x the change of folders[i] (see above).
    Every folder must be a plain LoRA adapter on the same base over the same modules. ``dtype``: of the saved
    factors (float16 halves the file; udtc multiplies them in float32 when it folds them in at load)."""
    from safetensors.torch import save_file

    if len(folders) != len(weights) or not folders:
        raise ValueError(f"{len(folders)} candidates and {len(weights)} weights: give one weight per candidate")
    if out.exists():
        raise FileExistsError(f"{out} exists; remove it or choose another --tag (a soup never overwrites a folder)")
    configs = [read_json(f / ADAPTER_CONFIG) for f in folders]
    bases = {read_json(f / CONFIG_NAME)["base_model"] for f in folders}
    if len(bases) != 1:
        raise ValueError(f"the candidates have different base models {sorted(bases)}; a soup needs one base")
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for folder, weight in zip(folders, weights):
        factors = plain_lora_factors(folder)
        if factors is None:
            raise ValueError(f"{folder} is not a plain LoRA adapter (one rank and alpha for every module, no saved "
                             "modules, no DoRA: what udtc.adapters.plain_lora_factors reads)")
        scaling, by_module = factors
        for name, ab in by_module.items():  # ab: {"A": (r, in), "B": (out, r)}
            parts.setdefault(name, []).append((ab["A"], weight * scaling * ab["B"]))
    if any(len(p) != len(folders) for p in parts.values()):
        raise ValueError("the candidates adapt different modules; a soup needs the same target modules")
    merged = {}
    for name, pairs in parts.items():
        merged[f"base_model.model.{name}.lora_A.weight"] = torch.cat([a for a, _ in pairs]).to(dtype).contiguous()  # (sum r, in)
        merged[f"base_model.model.{name}.lora_B.weight"] = torch.cat([b for _, b in pairs], dim=1).to(dtype).contiguous()  # (out, sum r)
    rank = sum(int(c["r"]) for c in configs)
    out.mkdir(parents=True)
    save_file(merged, out / ADAPTER_WEIGHTS)
    config = dict(configs[0], r=rank, lora_alpha=float(rank), base_model_name_or_path=None)
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    (out / CONFIG_NAME).write_text((folders[0] / CONFIG_NAME).read_text())
    base = folders[0] / bases.pop()
    if base.is_dir():  # a base inside the folder (finetune copies a local base in): the soup keeps it
        shutil.copytree(base, out / base.name)
    (out / "soup.json").write_text(json.dumps({"candidates": [str(f) for f in folders], "weights": weights,
                                               "dtype": str(dtype).removeprefix("torch."),
                                               "citation": "arXiv:2203.05482 (uniform soup)"}, indent=2) + "\n")


SOUP_CITATION = """@inproceedings{wortsman2022soups,
  title = {Model soups: averaging weights of multiple fine-tuned models improves accuracy without increasing inference time},
  author = {Wortsman, Mitchell and Ilharco, Gabriel and Gadre, Samir Yitzhak and Roelofs, Rebecca and Gontijo-Lopes, Raphael and Morcos, Ari S. and Namkoong, Hongseok and Farhadi, Ali and Carmon, Yair and Kornblith, Simon and Schmidt, Ludwig},
  booktitle = {ICML},
  note = {arXiv:2203.05482},
  year = {2022},
}"""
TASK_ARITHMETIC_CITATION = """@inproceedings{ilharco2023editing,
  title = {Editing models with task arithmetic},
  author = {Ilharco, Gabriel and Ribeiro, Marco Tulio and Wortsman, Mitchell and Gururangan, Suchin and Schmidt, Ludwig and Hajishirzi, Hannaneh and Farhadi, Ali},
  booktitle = {ICLR},
  note = {arXiv:2212.04089},
  year = {2023},
}"""


def ship(soup: Path, evaluated, row: dict, weights: list[float], folders: list[Path], recipe: str, command: str,
         sets) -> None:
    """The evaluated soup (folder ``soup``, loaded as the ``evaluated`` backend) as the default model's folder
    (``train_contrastive.SHIPPED``), checked to embed as the evaluated model, with its card (recipe, commands, this
    soup's protocol rows, throughput vs cosine MiniLM)."""
    from benchmarks.train_contrastive import SHIPPED, check_shipped
    from benchmarks.unseen import card_metrics
    from udtc.backends import get_backend
    from udtc.card import ModelCard
    from udtc.defaults import COSINE_MINILM
    from udtc.training.lora import LORA_CITATION

    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, CONFIG_NAME):
        shutil.copyfile(soup / name, SHIPPED / name)
    gap, speed = check_shipped(evaluated, sets, 1e-5)
    metrics = card_metrics(row, f"{speed['this model']} vs cosine MiniLM {speed['cosine MiniLM']} (256 texts, 1 thread)")
    scale, rank = sum(weights), read_json(soup / ADAPTER_CONFIG)["r"]
    dtype = json.loads((soup / "soup.json").read_text())["dtype"]
    card = ModelCard(
        backend="cosine", base_model=COSINE_MINILM, title="all-MiniLM-L6-v2 tuned for label sets (udtc)",
        data_statistics={"rows": "benchmarks.train_contrastive.training_rows: WordNet hypernym and topic-domain rows "
                                 "(of nouns, verbs, adjectives and adverbs) + training_mixture() (BBC topics, tweet and "
                                 "movie polarity); no label name of an evaluation set",
                         "each trained model (S = its seed)": f"`{recipe}`", "soup command": f"`{command}`"},
        hyperparameters={"models": ", ".join(f.parent.name for f in folders),
                         "soup": f"theta0 + {scale:g} x the mean of their changes (uniform soup, scaled)",
                         "weights": ", ".join(f"{w:g}" for w in weights), "adapter": "their LoRA factors side by side "
                         f"(rank {rank}, {dtype}): exactly the weighted sum of their changes"},
        metrics=metrics, citations=[c for c in (get_backend("cosine").citation, LORA_CITATION, SOUP_CITATION,
                                                TASK_ARITHMETIC_CITATION) if c],
        load_name="package:udtc/models/cosine-minilm-tuned")
    (SHIPPED / "README.md").write_text(card.render(), encoding="utf-8")
    print(f"wrote {SHIPPED} (embeds as the evaluated soup: max gap {gap:.1e}; {speed})", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", nargs="+", required=True, metavar="FOLDER", help="LoRA adapter folders (udtc's)")
    parser.add_argument("--weights", nargs="+", type=float, help="one per candidate (default: uniform, 1/k each)")
    parser.add_argument("--tag", required=True, help="writes results/candidates/<tag>/model and results/<tag>.{json,md}")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="of the saved factors")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ship", metavar="RECIPE", help="after the evaluation, write the soup to udtc/models/"
                        "cosine-minilm-tuned (the default model) with a card naming RECIPE, the command of each model")
    args = parser.parse_args(argv)
    folders = [Path(f) for f in args.candidates]
    missing = [str(f) for f in folders if not (f / ADAPTER_CONFIG).exists()]
    if missing:
        parser.error(f"not LoRA adapter folders (no {ADAPTER_CONFIG}): {missing}")
    weights = args.weights or [1.0 / len(folders)] * len(folders)
    torch.set_num_threads(args.threads)
    from benchmarks.train_contrastive import evaluate_seed, write
    from benchmarks.unseen import label_sets
    from udtc import Classifier

    started = time.perf_counter()
    out = CANDIDATES / args.tag / "model"
    soup_adapter(folders, weights, out, getattr(torch, args.dtype))
    sets = label_sets()
    backend = Classifier.from_pretrained(str(out), device="cpu").backend
    by_key: dict[tuple, list[dict]] = {}
    evaluate_seed(backend, sets, args.tag, False, by_key)
    command = " ".join([COMMAND, shlex.join(argv if argv is not None else sys.argv[1:])])
    write(args.tag, by_key, 1, [s.name for s in sets], False,
          {"command": command, "candidates": [str(f) for f in folders], "weights": weights, "seeds": [0],
           "seconds": round(time.perf_counter() - started, 1)})
    if args.ship:
        row = by_key[(args.tag, "none", (None, None))][0]
        ship(out, backend, row, weights, folders, args.ship, command, sets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
