"""Token-driven sparse fine-tuning (``finetune(..., method="sparse")``, udtc/training/sparse.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import udtc
from factories import ROWS
from udtc import Classifier
from udtc.training.sparse import SPARSE_DELTA, apply_delta, task_tokens

TEXTS = ["a goal for the team", "rain and wind in the city", "a recipe with food"]


@pytest.fixture(scope="module")
def tiny(tiny_models):
    return tiny_models("cosine")


def _params(clf: Classifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in clf.backend.trainable_module().named_parameters()}


def test_task_tokens_are_the_label_specific_ones(tiny):
    tokenizer = Classifier.from_pretrained(tiny, device="cpu").backend.tokenizer
    texts, targets = [r["text"] for r in ROWS], [(r["label"],) for r in ROWS]
    top = tokenizer.convert_ids_to_tokens(task_tokens(tokenizer, texts, targets, 6))
    assert {"rain", "recipe", "match"} <= set(top)
    assert "the" not in top  # in every label's texts: no association


def test_only_the_chosen_entries_change_and_the_change_is_saved_alone(tiny, tmp_path):
    base = _params(Classifier.from_pretrained(tiny, device="cpu"))
    out = tmp_path / "sparse"
    clf, metrics = udtc.finetune(tiny, ROWS, eval=ROWS, method="sparse", epochs=6, batch_size=6, learning_rate=1e-2,
                                 sparse_fraction=0.02, output_dir=out, progress=False)
    trained = _params(clf)
    changed = sum(int((trained[k] != base[k]).sum()) for k in base)
    budget = int(0.02 * sum(v.numel() for v in base.values()))
    assert 0 < changed <= budget
    losses = [r["train_loss"] for r in metrics["history"]]
    assert losses[-1] < losses[0]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["README.md", "base", "metrics.json", SPARSE_DELTA, "udtc_config.json"]
    delta = load_file(out / SPARSE_DELTA)
    assert sum(v.numel() for k, v in delta.items() if k.endswith("::values")) <= budget
    emb = next(k for k in base if k.endswith("word_embeddings.weight"))
    rows = {int(i) // base[emb].shape[1] for i in delta[f"{emb}::indices"]}
    tokenizer = clf.backend.tokenizer
    assert {"rain", "recipe"} <= set(tokenizer.convert_ids_to_tokens(sorted(rows)))  # token-driven rows
    config = json.loads((out / "udtc_config.json").read_text())
    assert config["base_model"] == "base" and config["labels"] == ["sports", "weather", "food"]
    assert "sparse_fraction" in (out / "README.md").read_text()
    again = Classifier.from_pretrained(out, device="cpu")
    a = [list(p.scores.values()) for p in clf.classify(TEXTS)]
    b = [list(p.scores.values()) for p in again.classify(TEXTS)]
    np.testing.assert_allclose(a, b, atol=1e-5)
    reloaded = _params(again)
    assert all(torch.equal(reloaded[k], trained[k]) or torch.allclose(reloaded[k], trained[k], atol=1e-6) for k in base)


def test_merge_saves_full_weights(tiny, tmp_path):
    udtc.finetune(tiny, ROWS, method="sparse", epochs=1, batch_size=6, merge=True, output_dir=tmp_path / "m",
                  progress=False)
    assert not (tmp_path / "m" / SPARSE_DELTA).exists() and (tmp_path / "m" / "model.safetensors").exists()


def test_a_delta_that_does_not_fit_its_base_is_refused(tiny, tmp_path):
    clf = Classifier.from_pretrained(tiny, device="cpu")
    name, p = next(iter(clf.backend.trainable_module().named_parameters()))
    save_file({f"{name}::indices": torch.tensor([p.numel()]), f"{name}::values": torch.tensor([1.0])},
              tmp_path / SPARSE_DELTA)
    with pytest.raises(ValueError, match="do not fit its shape"):
        apply_delta(clf.backend.trainable_module(), tmp_path)
    save_file({"nope.weight::indices": torch.tensor([0]), "nope.weight::values": torch.tensor([1.0])},
              tmp_path / SPARSE_DELTA)
    with pytest.raises(ValueError, match="does not match the base model"):
        apply_delta(clf.backend.trainable_module(), tmp_path)


@pytest.mark.parametrize("value", [0, 1.5, "x"])
def test_bad_sparse_fraction(tiny, tmp_path, value):
    with pytest.raises(ValueError, match="sparse_fraction must be in"):
        udtc.finetune(tiny, ROWS, method="sparse", sparse_fraction=value, output_dir=tmp_path / "o", progress=False)
