"""PPO for multi-label classification (``finetune(..., objective="ppo")``, GLiClass Sec. 2.3.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import udtc
from factories import ROWS
from udtc import Classifier
from udtc.training import ppo

MULTI = [{"text": r["text"], "label": r["label"] + ("|food" if "recipe" in r["text"] or "food" in r["text"] else "")}
         for r in ROWS]


def test_f1_reward_by_hand():
    actions = torch.tensor([[1.0, 1, 0], [0, 0, 0], [0, 0, 0], [1, 0, 0]])
    targets = torch.tensor([[1.0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0]])
    assert ppo.f1_reward(actions, targets).flatten().tolist() == pytest.approx([2 / 3, 1.0, 0.0, 1.0])


def test_first_iteration_is_the_policy_gradient_with_a_mean_baseline():
    z = torch.tensor([[0.3, -1.0, 2.0], [1.5, 0.2, -0.4]], requires_grad=True)
    targets = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    grads = []
    ppo.update(lambda: z * 1, targets, clip=0.2, iterations=1, step=lambda: grads.append(z.grad.clone()), key="k")
    actions = torch.bernoulli(torch.sigmoid(z.detach()), generator=ppo.generator("k"))  # the same draw
    reward = ppo.f1_reward(actions, targets)
    advantage = reward - reward.mean()
    # d/dz of -1/N sum A log pi(a|z), with ratio 1: -A (a - sigmoid(z)) / N
    expected = -advantage * (actions - torch.sigmoid(z.detach())) / 2
    torch.testing.assert_close(grads[0], expected)


def test_the_ratio_is_clipped():
    """After one large step every ratio leaves [1 - eps, 1 + eps] on its advantage's side: the clipped
    surrogate is flat there, so the second iteration's gradient is zero."""
    z = torch.zeros(2, 3, requires_grad=True)
    targets = torch.tensor([[1.0, 0, 1], [0, 1, 0]])
    grads = []

    def step():
        grads.append(z.grad.clone())
        with torch.no_grad():
            z.sub_(z.grad * 100)
        z.grad = None

    ppo.update(lambda: z * 1, targets, clip=0.2, iterations=2, step=step, key="c")
    assert grads[0].abs().sum() > 0
    assert torch.equal(grads[1], torch.zeros_like(grads[1]))


def test_a_policy_that_changes_between_two_passes_is_refused():
    """Dropout or a shuffled label order would make the first ratio noise instead of 1."""
    z = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match="must be deterministic"):
        ppo.update(lambda: z + 0.1 * torch.randn(2, 3), torch.ones(2, 3), clip=0.2, iterations=1, step=lambda: None,
                   key="d")


def test_ppo_trains_saves_and_reloads(tiny_models, tmp_path):
    clf, metrics = udtc.finetune(tiny_models("gliclass"), MULTI, eval=MULTI, label_separator="|", objective="ppo",
                                 method="full", epochs=3, batch_size=6, learning_rate=1e-3, output_dir=tmp_path / "o",
                                 progress=False)
    history = metrics["history"]
    assert all(np.isfinite(r["train_loss"]) and 0 <= r["train_reward"] <= 1 for r in history)
    card = (tmp_path / "o" / "README.md").read_text()
    assert "ppo_iterations" in card and "stepanov2025gliclass" in card
    again = Classifier.from_pretrained(tmp_path / "o", device="cpu")
    a = [list(p.scores.values()) for p in clf.classify(["rain in the city"], multi_label=True)]
    b = [list(p.scores.values()) for p in again.classify(["rain in the city"], multi_label=True)]
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_ppo_refuses_what_it_cannot_train(tiny_models, tmp_path):
    with pytest.raises(ValueError, match="objective='ppo' trains multi-label data"):
        udtc.finetune(tiny_models("gliclass"), ROWS, objective="ppo", output_dir=tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="leave loss='auto' and gradient_accumulation_steps=1"):
        udtc.finetune(tiny_models("gliclass"), MULTI, label_separator="|", objective="ppo", loss="focal",
                      output_dir=tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="unknown objective"):
        udtc.finetune(tiny_models("gliclass"), MULTI, objective="rl", output_dir=tmp_path / "c", progress=False)
