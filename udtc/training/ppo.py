"""Proximal policy optimisation for multi-label classification (``finetune(..., objective="ppo")``).

Stepanov et al., "GLiClass: Generalist Lightweight Model for Sequence Classification Tasks"
(arXiv:2508.07662), Sec. 2.3.2, ``shared/papers/gliclass.txt``. Each label of a text is a Bernoulli
decision of the policy ``pi_theta(a_ij | s_i) = sigmoid(z_ij)^a (1 - sigmoid(z_ij))^(1 - a)`` over the
logits ``z`` the backend scores (the ones ``classify(multi_label=True)`` turns into scores). Per batch:

    a_ij ~ Bernoulli(p_ij)  from the policy before the update              # Eq. (32), stochastic
    R_i  = F1(a_i, y_i)                                                     # reward (gliclass's default)
    A_i  = R_i - V(s_i)                                                     # advantage
    r_ij = pi_theta(a_ij | s_i) / pi_theta_old(a_ij | s_i)
    L_PPO = -1/N sum_i sum_j min(r_ij A_i, clip(r_ij, 1 - eps, 1 + eps) A_i)  # Eq. (26), eps = 0.2

and the policy takes ``ppo_iterations`` optimiser steps on the same sampled actions (3, "RL
iterations"). Every forward pass of a PPO update runs with the model in eval mode (no dropout; GLiClass
writes the labels in its canonical order instead of shuffling them), so ``r_ij`` is exactly 1 before the
first step and the clipping measures the updates alone, not dropout noise (TRL's PPO disables dropout for
the same reason); ``update`` refuses a policy whose two passes differ. The value ``V(s_i)`` is the batch's mean reward, which is what gliclass 0.1.21's
``RLTrainer`` uses when it is given no value model (its default); the value loss (Eq. 27) is then
zero. The KL penalty (Eq. 28) and the entropy bonus (Eq. 29) are disabled by default in the paper
(coefficients -1) and are not implemented. Actions are drawn with a generator seeded by the run's
seed, epoch, process and batch, so a resumed run draws the same ones.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from udtc.citations import GLICLASS_CITATION

CITATION = GLICLASS_CITATION  # the paper the objective comes from (its model card cites it)


def log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log pi(a | s) per (text, label) of the Bernoulli policy sigmoid(logits)."""
    return actions * F.logsigmoid(logits) + (1 - actions) * F.logsigmoid(-logits)


def f1_reward(actions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per text (B, 1): F1 of the chosen labels against the gold ones (1 when both are empty)."""
    tp = (actions * targets).sum(-1)  # (B,)
    chosen, gold = actions.sum(-1), targets.sum(-1)
    f1 = torch.where(chosen + gold > 0, 2 * tp / (chosen + gold).clamp(min=1e-9), torch.ones_like(tp))
    return f1.unsqueeze(-1)


@contextmanager
def deterministic(module: torch.nn.Module) -> Iterator[None]:
    """The module in eval mode for one PPO update (no dropout; GLiClass's canonical label order), then train mode."""
    module.eval()
    try:
        yield
    finally:
        module.train()


def generator(key: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(f"ppo:{key}".encode()))


def update(forward: Callable[[], torch.Tensor], targets: torch.Tensor, *, clip: float, iterations: int,
           step: Callable[[], None], key: str) -> tuple[float, float]:
    """One PPO update on a batch: sample, then ``iterations`` clipped policy steps (each ends with ``step()``,
    the optimiser step). Returns (mean PPO loss over the iterations, mean reward of the sampled actions)."""
    with torch.no_grad():
        raw = forward()  # (B, L)
        old = raw.float()
        targets = targets.to(old.device)
        actions = torch.bernoulli(torch.sigmoid(old).cpu(), generator=generator(key)).to(old.device)  # Eq. (32)
        old_log_prob = log_prob(old, actions)
        reward = f1_reward(actions, targets)  # (B, 1)
        advantage = reward - reward.mean()  # V(s) = the batch's mean reward
    losses = []
    for iteration in range(iterations):
        log_ratio = log_prob(forward().float(), actions) - old_log_prob  # (B, L)
        if iteration == 0 and raw.dtype == torch.float32 and (drift := float(log_ratio.detach().abs().max())) > 1e-3:
            raise RuntimeError(f"PPO: two forward passes of the same policy gave different logits (max log-ratio "
                               f"{drift:.2g}); the policy must be deterministic while it is "
                               "updated (dropout off, a fixed label order)")
        ratio = torch.exp(log_ratio)
        surrogate = torch.min(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage)
        loss = -surrogate.sum() / len(targets)  # Eq. (26)
        loss.backward()
        step()
        losses.append(loss.item())
    return sum(losses) / len(losses), float(reward.mean())
