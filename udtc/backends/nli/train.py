"""NLI training on premise/hypothesis pairs (``finetune(hypothesis_column=...)``): the hooks
:class:`~udtc.backends.nli.backend.NLIBackend` brings to the generic training loop.

The rows' labels name NLI classes (entailment/neutral/contradiction or entailment/not_entailment,
case, spaces and '-' ignored); the loss is cross-entropy over the model's classes on z(x, y) of
Eq. (2) in ``backend.py``, the usual NLI objective (Bowman et al., SNLI, EMNLP 2015). A plain encoder
gets a new seeded head (entailment first) through ``NLIBackend.from_encoder``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from udtc.config import read_json

#: the NLI class sets a new head can have, in label2id order (entailment first, so the zero-shot
#: pipeline contrasts it with the last class: contradiction, or not_entailment)
NLI_CLASSES = (("entailment", "neutral", "contradiction"), ("entailment", "not_entailment"))


def pair_classes(is_nli_folder: bool, folder: Path, *, method: str, merge: bool,
                 options: Mapping[str, Any]) -> list[str] | None:
    """The NLI classes of the model pair training starts from (config.json only), or None for a plain
    encoder, which gets a new head."""
    try:
        config = read_json(folder / "config.json", None) if folder.is_dir() else None
    except ValueError:
        config = None
    if is_nli_folder:
        assert isinstance(config, dict)  # detect() read it
        return [name for name, _ in sorted(config["label2id"].items(), key=lambda item: item[1])]
    if not isinstance(config, dict) or not config.get("model_type"):
        raise ValueError(f"{folder} holds neither an NLI model nor a transformers encoder (config.json with a "
                         "model_type) to train an NLI cross-encoder from")
    if any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        raise ValueError(f"{folder} is a sequence-classification model without an entailment label "
                         f"({sorted(config.get('label2id') or {})}); start from an NLI model or a plain encoder")
    unknown = sorted(set(options) - {"trust_remote_code"})
    if unknown:
        raise TypeError(f"nli backend got unknown options {unknown}; a new NLI head takes ['max_length', "
                        "'trust_remote_code']")
    if method in ("lora", "qlora") and not merge:
        raise ValueError(f"{folder} is a plain encoder, so it gets a new NLI head, which a LoRA adapter saved by "
                         "reference to the encoder cannot hold; pass merge=True or method='full'")
    return None


def pair_targets(data: Any, classes: Sequence[str] | None, what: str = "train") -> Any:
    """Pair rows (``Examples``) with each label renamed to the NLI class it names (case, spaces and '-'
    ignored).

    ``classes``: the model's NLI classes in id order; None (a new head): the data's labels choose
    entailment/neutral/contradiction or entailment/not_entailment. The result's ``labels`` are all
    the classes, so training is cross-entropy over every class of the model.
    """
    found = [_nli_key(x) for x in data.labels]
    if classes is None:
        classes = next((c for c in NLI_CLASSES if set(found) <= set(c)), None)
        if classes is None:
            bad = [x for x in data.labels if _nli_key(x) not in {*NLI_CLASSES[0], *NLI_CLASSES[1]}]
            problem = f"labels {bad} are not NLI classes" if bad else f"labels {data.labels} mix 3-way and 2-way classes"
            raise ValueError(f"{what} {problem}; a new NLI head needs entailment/neutral/contradiction (3-way) or "
                             "entailment/not_entailment (2-way) labels")
    by_key = {_nli_key(c): c for c in classes}
    unknown = [x for x, k in zip(data.labels, found) if k not in by_key]
    if unknown:
        raise ValueError(f"{what} labels {unknown} are not NLI classes of this model ({list(classes)}); "
                         "map them to those names first")
    targets = [tuple(by_key[_nli_key(x)] for x in target) for target in data.targets]
    present = sorted({x for target in targets for x in target})
    if what == "train" and len(present) < 2:
        raise ValueError(f"NLI training needs pairs of at least two classes; the {what} data has only {present}")
    return type(data)(data.texts, targets, False, data.skipped, list(classes))


def _nli_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())
