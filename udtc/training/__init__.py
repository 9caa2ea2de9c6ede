"""Fine-tuning: ``udtc.finetune(model, train, args=TrainingArguments(...))`` and ``udtc finetune``
(see docs/finetune.md).

Imported on first use of ``udtc.finetune``; peft is imported only when LoRA is used. Nothing here
names a backend: a backend brings its special cases through the hooks of
:class:`udtc.backends.base.Trainable`.
"""

from __future__ import annotations

from udtc.training.api import finetune
from udtc.training.args import TrainingArguments

__all__ = ["TrainingArguments", "finetune"]
