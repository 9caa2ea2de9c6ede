"""Fine-tuning: ``udtc.finetune(model, train, ...)`` and ``udtc finetune`` (see docs/finetune.md).

Imported on first use of ``udtc.finetune``; peft is imported only when LoRA is used.
"""

from __future__ import annotations

from udtc.training.api import finetune

__all__ = ["finetune"]
