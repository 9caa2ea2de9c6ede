"""Instruction tuning of llm-prompt (``finetune(..., method="instruction")``, arXiv 2512.12677 Approach 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import udtc
from factories import ROWS
from udtc import Classifier
from udtc.training.args import TrainingArguments
from udtc.training.lora import enable_gradient_checkpointing

TEXTS = ["a goal for the team", "rain and wind in the city", "a recipe with food"]
LABELS = ["sports", "weather", "food"]


@pytest.fixture(scope="module")
def tiny_llm(tiny_models):
    return tiny_models("llm-prompt")


def test_the_recipe_is_table_1_of_the_paper():
    from udtc.backends.llm.prompt import LlmPromptBackend as B

    args = TrainingArguments(method="instruction").resolved(B.supported_methods, B.lora_defaults, backend=B.name,
                                                            device="cpu", has_eval=False, recipes=B.training_recipes)
    assert (args.lora_r, args.lora_alpha, args.lora_dropout) == (64, 16.0, 0.05)
    assert (args.epochs, args.lr_scheduler, args.warmup_ratio, args.weight_decay, args.max_grad_norm) == (
        5, "cosine", 0.03, 0.01, 0.3)
    assert (args.batch_size, args.gradient_accumulation_steps) == (4, 4)
    mine = TrainingArguments(method="instruction", lr_scheduler="constant", max_grad_norm=2.0).resolved(
        B.supported_methods, B.lora_defaults, backend=B.name, device="cpu", has_eval=False, recipes=B.training_recipes)
    assert (mine.lr_scheduler, mine.max_grad_norm) == ("constant", 2.0)  # settings the caller changed win
    passed = TrainingArguments(method="instruction", lr_scheduler="linear").resolved(
        B.supported_methods, B.lora_defaults, backend=B.name, device="cpu", has_eval=False, recipes=B.training_recipes,
        explicit=frozenset({"lr_scheduler"}))
    assert passed.lr_scheduler == "linear"  # finetune(lr_scheduler="linear"): the default value, passed on purpose
    batch = TrainingArguments(method="instruction").resolved(
        B.supported_methods, B.lora_defaults, backend=B.name, device="cpu", has_eval=False, recipes=B.training_recipes,
        explicit=frozenset({"batch_size"}))
    assert (batch.batch_size, batch.gradient_accumulation_steps) == (16, 1)  # not 16 x the recipe's 4
    accum = TrainingArguments(method="instruction", gradient_accumulation_steps=2).resolved(
        B.supported_methods, B.lora_defaults, backend=B.name, device="cpu", has_eval=False, recipes=B.training_recipes)
    assert (accum.batch_size, accum.gradient_accumulation_steps) == (16, 2)


def test_training_logits_are_what_the_trained_model_scores(tiny_llm):
    clf = Classifier.from_pretrained(tiny_llm, device="cpu")
    backend = clf.backend
    backend.use_instruction_prompt()
    with torch.no_grad():
        trained = backend.training_logits(TEXTS, LABELS, multi_label=False)  # (3, 3)
    scored = backend.score(TEXTS, LABELS, multi_label=False, batch_size=4).logits
    torch.testing.assert_close(trained, scored, atol=1e-4, rtol=0)
    assert (trained < 0).all()  # summed log-probabilities


def test_instruction_tuning_learns_and_saves_the_prompt_it_was_trained_with(tiny_llm, tmp_path):
    clf, metrics = udtc.finetune(tiny_llm, ROWS, eval=ROWS, method="instruction", epochs=4, batch_size=6,
                                 gradient_accumulation_steps=1,
                                 learning_rate=1e-2, lora_dropout=0.0, output_dir=tmp_path / "o", progress=False)
    losses = [r["train_loss"] for r in metrics["history"]]
    assert losses[-1] < losses[0] * 0.6  # the gold answers' NLL (accuracy on a random tiny LM: benchmarks)
    config = json.loads((tmp_path / "o" / "udtc_config.json").read_text())
    assert config["backend"] == "llm-prompt"
    assert {k: config["options"][k] for k in ("prompt_mode", "calibrate", "reduction")} == {
        "prompt_mode": "listed", "calibrate": False, "reduction": "sum"}
    assert (tmp_path / "o" / "adapter_config.json").exists()
    card = (tmp_path / "o" / "README.md").read_text()
    assert "yousefiramandi2025finetuning" in card and "hu2022lora" in card
    again = Classifier.from_pretrained(tmp_path / "o", device="cpu")
    a = [list(p.scores.values()) for p in clf.classify(TEXTS)]
    b = [list(p.scores.values()) for p in again.classify(TEXTS)]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_instruction_refuses_what_it_cannot_train(tiny_llm, tiny_models, tmp_path):
    multi = [{"text": r["text"], "label": [r["label"], "other"]} for r in ROWS]
    with pytest.raises(ValueError, match="method='instruction' trains single-label data"):
        udtc.finetune(tiny_llm, multi, method="instruction", epochs=1, output_dir=tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="token NLL of the gold answer"):
        udtc.finetune(tiny_llm, ROWS, method="instruction", loss="focal", output_dir=tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="method='instruction' is not supported by the 'cosine' backend"):
        udtc.finetune(tiny_models("cosine"), ROWS, method="instruction", output_dir=tmp_path / "c", progress=False)
    assert not any((tmp_path / d).exists() for d in "abc")


def test_gradient_checkpointing_gives_the_same_training_logits_and_says_what_it_costs(tiny_llm):
    backend = Classifier.from_pretrained(tiny_llm, device="cpu").backend
    backend.use_instruction_prompt()
    backend.model.train()
    plain = backend.training_logits(TEXTS, LABELS, multi_label=False)  # (3, 3), the KV-cache path
    enable_gradient_checkpointing(backend.model)
    with pytest.warns(UserWarning, match="once per label"):
        checkpointed = backend.training_logits(TEXTS, LABELS, multi_label=False)  # every prompt + answer encoded
    torch.testing.assert_close(checkpointed, plain, atol=1e-4, rtol=0)
    checkpointed.sum().backward()  # gradients flow through the re-encoded path
    assert any(p.grad is not None for p in backend.model.parameters())
