"""Model cards: the card is data (a dataclass) rendered through one template."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from udtc._version import __version__

_TEMPLATE = """---
library_name: udtc
tags:
- text-classification
- zero-shot-classification
- udtc
{base_line}---

# {title}

A [udtc](https://pypi.org/project/udtc/) classifier using the **{backend}** backend.

- Base model: {base_model}
{weights_line}- udtc version: {version}
{labels_section}{data_section}{hyper_section}{metrics_section}{calibration_section}
## How to use

```python
from udtc import Classifier

clf = Classifier.from_pretrained("{load_name}")
print(clf.classify("Your text here"{example_labels}))
```

or on the command line: `udtc classify "Your text here" --model {load_name} --labels {example_cli}`
{citation_section}"""


#: labels listed in a card's table and example (a model trained on thousands of label names lists the first ones)
CARD_LABELS = 50


@dataclass
class ModelCard:
    backend: str
    base_model: str | None = None
    labels: list[str] | None = None
    title: str | None = None
    label_examples: dict[str, str] = field(default_factory=dict)
    data_statistics: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)  # Calibration.summary()
    citations: list[str] = field(default_factory=list)
    load_name: str = "path/to/this/folder"
    base_weights: str | None = None  # where the weights of the models it builds on are (save_pretrained)

    def render(self) -> str:
        labels = self.labels or ["positive", "negative"]
        labels_section = ""
        if self.labels:
            rows = "\n".join(f"| {name} | {self.label_examples.get(name, '')} |" for name in self.labels[:CARD_LABELS])
            more = len(self.labels) - CARD_LABELS
            rest = (f"\n{more} more labels are not listed here; all {len(self.labels)} are in `udtc_config.json` "
                    "(`Classifier.labels`).\n" if more > 0 else "")
            labels_section = f"\n## Labels\n\n| label | example |\n| --- | --- |\n{rows}\n{rest}"
        return _TEMPLATE.format(
            base_line=f"base_model: {self.base_model}\n" if self.base_model and "/" in self.base_model and not self.base_model.startswith(("/", ".", "package:")) else "",
            title=self.title or f"udtc {self.backend} classifier",
            backend=self.backend,
            base_model=self.base_model or "unknown",
            weights_line=f"- Base weights: {self.base_weights}\n" if self.base_weights else "",
            version=__version__,
            labels_section=labels_section,
            data_section=_table("Training data", self.data_statistics),
            hyper_section=_table("Hyperparameters", self.hyperparameters),
            metrics_section=_table("Metrics", self.metrics),
            calibration_section=_table("Calibration", self.calibration),
            load_name=self.load_name,
            example_labels="" if self.labels else f", {labels!r}",
            example_cli=",".join(labels[:CARD_LABELS]),
            citation_section=("\n## Citations\n\n" + "\n\n".join(f"```bibtex\n{c.strip()}\n```" for c in self.citations) + "\n")
            if self.citations else "",
        )


def _table(title: str, values: dict[str, Any]) -> str:
    if not values:
        return ""
    rows = "\n".join(f"| {k} | {json.dumps(v) if not isinstance(v, str) else v} |" for k, v in values.items())
    return f"\n## {title}\n\n| name | value |\n| --- | --- |\n{rows}\n"
