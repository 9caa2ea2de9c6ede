"""Instruction tuning of a prompt-scoring causal LM (``finetune(..., method="instruction")``): the hooks
:class:`~udtc.backends.llm.prompt.LlmPromptBackend` brings to the generic training loop.

Yousefiramandi & Cooney, "Fine-Tuning Causal LLMs for Text Classification: Embedding-Based vs.
Instruction-Based Approaches" (arXiv 2512.12677), Approach 2 (Sec. 2.2; ``shared/papers/
llm-classification-embedding-vs-instruction.txt``): every example becomes a prompt that lists the label
set and asks for the category, and the model is trained on the gold label as the answer with the token
NLL of the answer alone (answer-only masking):

    L = - sum_j log p(y_j | prompt(x, Y), y_<j)                      # Eq. (4)

LoRA on every linear layer of the blocks (not ``lm_head``), r 64, alpha 16, dropout 0.05, 5 epochs,
cosine schedule with 3 % warmup, weight decay 0.01, gradient clipping at 0.3 (Table 1). The paper's
learning rate did not survive in our copy of the text; udtc uses 1e-3, the better of 1e-4 and 1e-3 on a
TREC-6 validation split (``python -m benchmarks.instruction --select-lr 1e-4 1e-3``: macro-F1 0.075 vs 0.405).
The trained model is scored exactly as ``llm-prompt`` scores any label: the
answer's summed log-probability after the same prompt (``prompt_mode="listed"``, ``reduction="sum"``), a
softmax over the label set -- constrained decoding over the label set, scored exactly rather than
generated. Contextual calibration is turned off: the trained model's prior is the data's.

Where udtc differs from the paper: the base is not 4-bit (QLoRA needs CUDA: the paper trains on one GPU;
here instruction tuning runs on the CPU in float32), and multi-label data (Eq. (5): the delimiter-joined
list of gold labels as one answer) is refused, because ``llm-prompt`` scores labels one at a time.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from udtc.backends._cache import LabelCache
from udtc.backends.base import Trainable
from udtc.compat import is_checkpointing

#: every linear layer of a Llama/Qwen/Gemma-style block, ``lm_head`` excluded (Table 1)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CITATION = """@article{yousefiramandi2025finetuning,
  title = {Fine-Tuning Causal {LLMs} for Text Classification: Embedding-Based vs. Instruction-Based Approaches},
  author = {Yousefiramandi, Amirhossein and Cooney, Ciaran},
  journal = {arXiv preprint arXiv:2512.12677},
  year = {2025},
}"""


class InstructionTraining(Trainable):
    """The training hooks of ``llm-prompt``: method ``instruction`` only."""

    model: torch.nn.Module
    builder: Any  # llm.prompt.PromptBuilder
    max_length: int
    prompt_mode: str
    calibrate: bool
    reduction: str
    _calibration: LabelCache  # per label set, cleared when the weights change
    if TYPE_CHECKING:
        def rebuild_prompt(self) -> None: ...
        def _score_cached(self, prompts: list[list[int]], answers: list[list[int]], batch_size: int) -> torch.Tensor: ...
        def logits(self, sums: torch.Tensor, lengths: torch.Tensor, labels: list[str], multi_label: bool,
                   batch_size: int = 32) -> torch.Tensor: ...

    supported_methods: ClassVar[frozenset[str]] = frozenset({"instruction"})
    method_citations: ClassVar[dict[str, str]] = {"instruction": CITATION}
    lora_targets: ClassVar[tuple[str, ...]] = LORA_TARGETS
    lora_defaults: ClassVar[dict[str, float]] = {"lora_r": 64, "lora_alpha": 16.0, "lora_dropout": 0.05}  # Table 1
    #: Table 1; the learning rate (not in our copy of the paper) chosen on a validation split (benchmarks/instruction.py)
    #: (the paper: batch 1 per device with accumulation; here 4 x 4 = 16: a batch of 16 took 9.1 GB resident
    #: for SmolLM2-135M on a shared 24 GB machine and was killed)
    training_recipes: ClassVar[dict[str, dict[str, Any]]] = {"instruction": {
        "learning_rate": 1e-3, "epochs": 5, "weight_decay": 0.01, "max_grad_norm": 0.3, "lr_scheduler": "cosine",
        "warmup_ratio": 0.03, "batch_size": 4, "gradient_accumulation_steps": 4}}

    def prepare_training(self, labels: list[str], *, multi_label: bool, method: str) -> None:
        if multi_label:
            raise ValueError("method='instruction' trains single-label data (llm-prompt scores one label per answer); "
                             "for multi-label data use the llm-head backend (method='lora')")
        self.use_instruction_prompt()

    def use_instruction_prompt(self) -> None:
        """Score as the trained model is trained: the label set in the prompt, the answer's summed
        log-probability, no contextual calibration (all saved in ``udtc_config.json``)."""
        self.prompt_mode, self.calibrate, self.reduction = "listed", False, "sum"
        self.rebuild_prompt()

    def trainable_module(self) -> torch.nn.Module:
        return self.model

    def training_logits(self, texts: list[str], labels: list[str], *, multi_label: bool) -> torch.Tensor:
        """The logits ``score`` computes (B, L), with autograd: the prompt runs once per text and every
        answer continues from its cache. With the instruction prompt (sum, uncalibrated) they are the
        answers' log-probabilities, whose gold entry is Eq. (4)."""
        if is_checkpointing(self.model) and self.model.training and len(labels) > 1:
            warnings.warn(f"gradient_checkpointing makes transformers turn the KV cache off, so method='instruction' "
                          f"encodes every prompt once per label ({len(labels)} times the compute of a step); "
                          "leave it off unless memory needs it", UserWarning, stacklevel=2)
        builder, max_length = self.builder, self.max_length
        prompts = [builder.prompt_ids(t, labels, max_length)[0] for t in texts]
        answers = [builder.answer_ids(x) for x in labels]
        sums = self._score_cached(prompts, answers, len(texts) * len(labels))  # (B, L)
        return self.logits(sums, torch.tensor([float(len(a)) for a in answers]), labels, multi_label)

    def clear_cache(self) -> None:
        self._calibration.clear()
