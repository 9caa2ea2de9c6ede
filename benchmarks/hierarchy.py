"""How a hierarchical label is read: TREC-50's fine classes under their 6 coarse classes.

``classify(text, {"parent": ["leaf", ...]})`` flattens hierarchical labels (udtc/inputs.py); this measures
which text the model should read for a leaf: the leaf alone, "leaf (parent)" (udtc's choice), "parent: leaf",
"parent leaf" or "leaf, a kind of parent". A fixed stratified sample of 600 TREC-50 questions (seed 0), macro-F1
and accuracy over the 50 fine classes, 1 torch thread; plain cosine all-MiniLM-L6-v2 (``COSINE_MINILM``, the
default model when udtc's reading was chosen; ``results/hierarchy.md``) or the default model (``--model default``,
``results/hierarchy_default.md``).

    python -m benchmarks.hierarchy
    python -m benchmarks.hierarchy --model default
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import COSINE_MODELS, write_results
from benchmarks.datasets import TREC_COARSE, TREC_FINE, load, sample

READINGS = {"leaf": "{c}", "leaf (parent)": "{c} ({p})", "parent: leaf": "{p}: {c}", "parent leaf": "{p} {c}",
            "leaf, a kind of parent": "{c}, a kind of {p}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hierarchy", description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=600)
    parser.add_argument("--model", choices=sorted(COSINE_MODELS), default="cosine-minilm")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from udtc import Classifier
    from udtc.training.metrics import classification_metrics

    data = sample(load("trec50"), args.n, seed=0)
    parent = {TREC_FINE[k]: TREC_COARSE[k.split(":")[0]] for k in TREC_FINE}
    clf = Classifier.from_pretrained(COSINE_MODELS[args.model], device="cpu")
    lines = ["| the model reads | macro-F1 | accuracy |", "|---|---|---|"]
    results = {}
    for name, fmt in READINGS.items():
        labels = {c: fmt.format(c=c, p=p) for c, p in parent.items()}  # the reading as a description
        pred = [p.label for p in clf.classify(data.texts, labels, batch_size=64, progress=False)]
        results[name] = classification_metrics(pred, data.labels, list(labels))
        lines.append(f"| {name} | {100 * results[name]['macro_f1']:.1f} | {100 * results[name]['accuracy']:.1f} |")
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    name = "hierarchy" + ("_default" if args.model == "default" else "")
    print(f"wrote {write_results(name, {'args': vars(args), 'results': results}, text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
