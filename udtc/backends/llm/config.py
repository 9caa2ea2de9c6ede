"""Options of the llm-prompt and llm-head backends (what ``udtc_config.json`` stores under ``options``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from udtc.backends.base import Options


@dataclass
class LlmPromptOptions(Options):
    prompt_mode: str = "single"  # "single" or "listed" (the label set in the prompt)
    calibrate: bool = True  # contextual calibration (Zhao et al. 2021)
    reduction: str = "mean"  # "mean" or "sum" of the label's token log-probabilities
    prompt: str | None = None  # own prompt with {text} (and {labels}); the mode's when None
    chat_template: bool | str = "auto"
    system_prompt: str | None = None
    answer_prefix: str = ""
    end_of_answer: bool = True
    max_length: int = 1024
    kv_cache: bool = True


@dataclass
class LlmHeadOptions(Options):
    scale: float = 20.0
    multi_label_shift: float = 0.3
    append_eos: bool = True
    text_prefix: str = ""
    label_prefix: str = ""
    max_length: int = 1024
    padding_side: str = "right"
    train_head: str = "linear"  # the head finetune builds: "linear", "mlp" or "none" (label-set mode)
    head_hidden: int | None = None
    #: QLoRA: NF4 weights through bitsandbytes (CUDA); never saved
    load_in_4bit: bool = field(default=False, metadata={"saved": False})
