"""The training loop shared by every trainable backend.

A backend plugs in through the optional part of its contract (``udtc/backends/base.py``):
``supported_methods``, ``trainable_module()`` and ``training_logits(texts, labels, multi_label)``.
Each step scores a batch of texts against the whole training label set (or, with ``negatives=k``,
the batch's gold labels plus k sampled others), so the loss is softmax cross-entropy over the
candidate labels (single-label) or per-label sigmoid BCE (multi-label), on exactly the logits
``classify`` turns into probabilities (``method="instruction"``: the token NLL of the gold answer alone); ``loss="focal"`` is the focal loss of Lin et al. (2017,
arXiv:1708.02002) that GLiClass trains with (arXiv:2508.07662, Sec. 2.3):

    FL = alpha_t * (1 - p_t) ** gamma * BCE(logit, y),   p_t = sigmoid(logit) if y else 1 - sigmoid(logit)
    alpha_t = alpha if y else 1 - alpha

    AdamW (decoupled weight decay on matrices only), linear/cosine decay after a linear warmup,
    gradient accumulation, gradient clipping, mixed precision (CUDA only), evaluation after each
    epoch (accuracy, macro-/micro-F1), early stopping on eval macro-F1, the best epoch restored
    at the end, a checkpoint after each epoch (``checkpoint.py``) from which a killed run resumes.

Distributed: when launched by ``torchrun`` or ``accelerate launch`` (``WORLD_SIZE`` > 1), every
process trains on its shard of each epoch through ``DistributedDataParallel``; ``batch_size`` is
per process. Evaluation is sharded and its counts summed, so every process takes the same
early-stopping decision; only process 0 writes.
"""

from __future__ import annotations

import math
import os
import random
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from udtc.backends.base import Trainable
from udtc.inputs import label_words
from udtc.training import checkpoint as ckpt
from udtc.training.args import ADAPTER_METHODS, SCHEDULERS, TrainingArguments
from udtc.training.data import Examples
from udtc.training.losses import loss as compute_loss, resolve_loss
from udtc.training.metrics import counts, from_counts, indicator

@dataclass
class Dist:
    """Where this process stands in a (possibly one-process) run."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    created: bool = False  # True when udtc started the process group (and so ends it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            values = values.to(self.device)
            torch.distributed.all_reduce(values)
        return values.cpu()


def setup_distributed(device: torch.device) -> Dist:
    """Join the process group a launcher describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), if any."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist(device=device)
    import torch.distributed as tdist

    created = not tdist.is_initialized()
    if created:
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", tdist.get_rank())))
        torch.cuda.set_device(device)
    return Dist(tdist.get_rank(), tdist.get_world_size(), device, created)


@dataclass
class Result:
    history: list[dict[str, Any]]
    best_epoch: int | None
    epochs_run: int
    stopped_early: bool
    resumed_from_epoch: int
    peft_model: Any = None  # the PeftModel for LoRA/QLoRA (adapter not merged yet)
    sparse: Any = None  # method "sparse": the trained entries (udtc.training.sparse.Selection)


class _Forward(torch.nn.Module):
    """What DistributedDataParallel wraps: the trained module, called through the backend."""

    def __init__(self, backend: Trainable, module: torch.nn.Module):
        super().__init__()
        self.module = module
        self.backend = backend

    def forward(self, texts: list[str], labels: list[str], multi_label: bool) -> torch.Tensor:
        return self.backend.training_logits(texts, labels, multi_label=multi_label)


def run(backend: Trainable, data: Examples, eval_data: Examples | None, args: TrainingArguments, output_dir: Path,
        dist: Dist, *, resume: bool) -> Result:
    """Fine-tune ``backend`` in place on ``data``; checkpoints go to ``output_dir/checkpoints``."""
    _seed(args.seed)
    assert args.method is not None and args.epochs is not None, "run() takes TrainingArguments.resolved(...)"
    backend.prepare_training(list(data.labels), multi_label=data.multi_label, method=args.method)
    module = backend.trainable_module()
    peft_model = _prepare(backend, module, args)
    loss_kind = resolve_loss(args.loss, data.multi_label, args.method)
    selection = None
    if args.method == "sparse":  # chosen from the base weights, so a resumed run chooses the same entries
        from udtc.training import sparse

        selection = sparse.choose(backend, module, data, label_texts(backend, data.labels, pairs=data.pairs),
                                  torch.from_numpy(indicator(data.targets, data.labels)).float(),
                                  lambda z, y: compute_loss(z, y, loss_kind, args), args)
    named = ckpt.trainable_state(module)
    if not named:
        raise ValueError(f"method={args.method!r} leaves nothing to train in the {backend.name!r} model "
                         f"(head modules: {list(backend.head_modules) or 'none'})")
    params = list(named.values())
    if dist.world > 1:
        torch.manual_seed(args.seed + 1_000_003 * dist.rank)  # its own dropout masks per process
    optimizer = _optimizer(named, args)
    micro_per_epoch = math.ceil(math.ceil(len(data) / dist.world) / args.batch_size)
    total_steps = args.epochs * math.ceil(micro_per_epoch / args.gradient_accumulation_steps)
    if args.objective == "ppo":  # ppo_iterations optimiser steps per batch (udtc/training/ppo.py)
        total_steps *= args.ppo_iterations
    from transformers import get_scheduler

    scheduler = get_scheduler(SCHEDULERS[args.lr_scheduler], optimizer,
                              num_warmup_steps=round(args.warmup_ratio * total_steps), num_training_steps=total_steps)
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.mixed_precision)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None

    state: dict[str, Any] = {"epoch": 0, "history": [], "best_epoch": None, "best_metric": None, "bad_epochs": 0,
                             "finished": False, "stopped_early": False}
    last = ckpt.latest(output_dir) if resume else None
    if last is not None:
        saved = ckpt.read_state(last)
        ckpt.load_trainable(module, ckpt.load_tensors(last, "trainable"))
        ckpt.load_optimizer(optimizer, ckpt.load_tensors(last, "optimizer"), saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        ckpt.set_rng_state(ckpt.load_tensors(last, "rng"), dist.rank)
        ckpt.set_host_rng_state(saved["host_rng"])
        state = saved["train"]
    resumed_from = state["epoch"]

    forward = _Forward(backend, module)
    model: torch.nn.Module = forward
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(forward, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
                                        find_unused_parameters=args.method in ("full", "head"))  # e.g. BERT's pooler
    label_inputs = label_texts(backend, data.labels, pairs=data.pairs)
    targets = torch.from_numpy(indicator(data.targets, data.labels)).float()  # (N, L)
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_dtype else nullcontext
    from tqdm.auto import tqdm

    bar = tqdm(total=args.epochs * micro_per_epoch, initial=state["epoch"] * micro_per_epoch, desc="finetune",
               unit="batch", disable=not (args.progress and dist.main))
    backend.clear_cache()
    try:
        for epoch in range(state["epoch"] + 1, args.epochs + 1):
            if state["finished"]:
                break
            module.train()
            order = _shard(len(data), args.seed, epoch, dist)
            batches = [order[i : i + args.batch_size] for i in range(0, len(order), args.batch_size)]
            loss_sum = torch.zeros(2, dtype=torch.float64)  # (sum of losses * rows, rows)
            reward_sum = torch.zeros(2, dtype=torch.float64)  # PPO: (sum of rewards * rows, rows)
            accum = args.gradient_accumulation_steps
            for i, batch in enumerate(batches):
                group = min(accum, len(batches) - (i // accum) * accum)  # micro-batches in this optimizer step
                stepping = (i + 1) % accum == 0 or i == len(batches) - 1
                sync = cast(Any, model).no_sync() if dist.world > 1 and not stepping else nullcontext()
                columns = _sample_labels(targets[batch], args.negatives, f"{args.seed}:{epoch}:{dist.rank}:{i}")
                if args.objective == "ppo":
                    from udtc.training import ppo

                    key = f"{args.seed}:{epoch}:{dist.rank}:{i}"
                    names = _show_labels(data.labels, columns, args, key)
                    with autocast(), ppo.deterministic(module):  # one policy for the sample and its updates
                        loss_value, reward = ppo.update(
                            lambda: model([data.texts[j] for j in batch], label_texts(backend, names, pairs=data.pairs),
                                          data.multi_label),  # (B, L')
                            targets[batch][:, columns], clip=args.ppo_clip, iterations=args.ppo_iterations,
                            step=lambda: _step(optimizer, scheduler, scaler, params, args.max_grad_norm), key=key)
                    loss_sum += torch.tensor([loss_value * len(batch), len(batch)], dtype=torch.float64)
                    reward_sum += torch.tensor([reward * len(batch), len(batch)], dtype=torch.float64)
                    bar.update(1)
                    continue
                with sync:
                    with autocast():
                        names = _show_labels(data.labels, columns, args, f"{args.seed}:{epoch}:{dist.rank}:{i}")
                        logits = model([data.texts[j] for j in batch],
                                       label_texts(backend, names, pairs=data.pairs),
                                       data.multi_label)  # (B, L') over the batch's candidate labels
                    loss = compute_loss(logits.float(), targets[batch][:, columns].to(logits.device), loss_kind, args)
                    (scaler.scale(loss / group) if scaler else loss / group).backward()
                if stepping:
                    _step(optimizer, scheduler, scaler, params, args.max_grad_norm)
                loss_sum += torch.tensor([loss.item() * len(batch), len(batch)], dtype=torch.float64)
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss_sum[0] / loss_sum[1]:.4f}")
            module.eval()
            total = dist.all_sum(loss_sum)
            record: dict[str, Any] = {"epoch": epoch, "train_loss": float(total[0] / total[1]),
                                      "learning_rate": scheduler.get_last_lr()[0]}
            if args.objective == "ppo":
                rewards = dist.all_sum(reward_sum)
                record["train_reward"] = float(rewards[0] / rewards[1])  # mean F1 of the sampled label sets
            if eval_data is not None:
                record["eval"] = evaluate(backend, eval_data, label_inputs, args.batch_size, dist, autocast)
                if args.progress and dist.main:
                    bar.write(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4f}" for k, v in record["eval"].items() if k != "examples"))
            _track_best(state, record, args)
            state["epoch"] = epoch
            state["history"].append(record)
            _save(output_dir, module, optimizer, scheduler, scaler, state, dist)
    finally:
        bar.close()
    if state["best_epoch"] is not None and state["best_epoch"] != state["epoch"]:
        ckpt.load_trainable(module, ckpt.load_tensors(ckpt.epoch_dir(output_dir, state["best_epoch"]), "trainable"))
    module.eval()
    backend.clear_cache()
    return Result(state["history"], state["best_epoch"], state["epoch"], state["stopped_early"], resumed_from, peft_model,
                  selection)


def label_texts(backend: Trainable, names: list[str], *, pairs: bool) -> list[str]:
    """What the model reads for each training label: the name as ``classify`` reads it (``label_words``) in
    the backend's default template; pair classes are passed as named."""
    return list(names) if pairs else [backend.default_template.replace("{}", label_words(x)) for x in names]


def evaluate(backend: Trainable, data: Examples, label_inputs: list[str], batch_size: int, dist: Dist | None = None,
             autocast=nullcontext) -> dict[str, float]:
    """Accuracy, macro- and micro-F1 of the backend on ``data`` (this process's shard, counts summed)."""
    dist = dist or Dist()
    gold = indicator(data.targets, data.labels)  # (N, L)
    rows = list(range(dist.rank, len(data), dist.world))
    table = np.zeros((3, len(data.labels) + 1), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            with autocast():
                logits = backend.training_logits([data.texts[i] for i in chunk], label_inputs,
                                                 multi_label=data.multi_label).float().cpu()  # (B, L)
            if data.multi_label:
                pred = (logits >= 0).numpy()  # sigmoid(logit) >= 0.5
            else:
                pred = F.one_hot(logits.argmax(-1), len(label_inputs)).bool().numpy()
            table += counts(pred, gold[chunk])
    table = dist.all_sum(torch.from_numpy(table)).numpy()
    return {**from_counts(table), "examples": len(data)}


# ---------------------------------------------------------------------------------------------- pieces
def _prepare(backend: Trainable, module: torch.nn.Module, args: TrainingArguments) -> Any:
    """Mark what ``args.method`` trains; returns the PeftModel for LoRA/QLoRA, else None."""
    if args.gradient_checkpointing:
        from udtc.training.lora import enable_gradient_checkpointing

        enable_gradient_checkpointing(module)
    if args.method in ADAPTER_METHODS:
        from udtc.training.lora import add_lora

        assert args.lora_r is not None and args.lora_alpha is not None and args.lora_dropout is not None
        return add_lora(backend, r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
                        target_modules=args.lora_target_modules or backend.lora_targets,
                        quantized=args.method == "qlora")
    module.requires_grad_(args.method == "full")
    if args.method == "head":
        for name in backend.head_modules:
            module.get_submodule(name).requires_grad_(True)
    return None


def _optimizer(named: dict[str, torch.Tensor], args: TrainingArguments) -> torch.optim.Optimizer:
    decay = [p for p in named.values() if p.ndim >= 2]  # weight matrices; not biases, norms, LoRA-free scalars
    rest = [p for p in named.values() if p.ndim < 2]
    # "sparse": no weight decay, so the entries that do not train stay exactly the base's (udtc/training/sparse.py)
    weight_decay = 0.0 if args.method == "sparse" else args.weight_decay
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    assert args.learning_rate is not None, "run() takes TrainingArguments.resolved(...)"
    if args.optim == "adamw_8bit":  # QLoRA's 8-bit AdamW (Dettmers et al.); finetune checked bitsandbytes + CUDA
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit([g for g in groups if g["params"]], lr=args.learning_rate)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=args.learning_rate)


def _sample_labels(targets: torch.Tensor, negatives: int | None, key: str) -> list[int]:
    """Columns a batch is trained on: all labels, or its gold labels plus ``negatives`` others drawn
    with ``key`` (seed, epoch, rank, batch: the same draw on a resumed run), in training-label order."""
    n = targets.shape[1]
    if negatives is None:
        return list(range(n))
    gold = targets.any(0).nonzero().flatten().tolist()
    others = sorted(set(range(n)) - set(gold))
    picked = random.Random(f"negatives:{key}").sample(others, min(negatives, len(others)))
    return sorted(gold + picked)


def _show_labels(labels: list[str], columns: list[int], args: TrainingArguments, key: str) -> list[str]:
    """Names the batch's candidate labels are shown as: each label with synonyms becomes one of them with
    probability ``synonym_rate`` (the SCE paper's synonym augmentation, Sec. 2.2), drawn with ``key`` so a
    resumed run shows the same names; a synonym that is another label's name is never shown."""
    names = [labels[c] for c in columns]
    if not args.label_synonyms:
        return names
    rng = random.Random(f"synonyms:{key}")
    for k, name in enumerate(names):
        options = args.label_synonyms.get(name)
        if options and rng.random() < args.synonym_rate:
            pick = rng.choice(options)
            if pick not in names and pick not in labels:  # never the name of another training label
                names[k] = pick
    return names


def _step(optimizer, scheduler, scaler, params, max_grad_norm: float | None) -> None:
    if scaler is not None:
        scaler.unscale_(optimizer)
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _shard(n: int, seed: int, epoch: int, dist: Dist) -> list[int]:
    """This process's rows for ``epoch``: a seeded permutation, padded to a multiple of the world size."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    order += order[: (-n) % dist.world]
    return order[dist.rank :: dist.world]


def _track_best(state: dict[str, Any], record: dict[str, Any], args: TrainingArguments) -> None:
    epoch = record["epoch"]
    if "eval" not in record:
        state["best_epoch"] = epoch
    elif state["best_metric"] is None or record["eval"]["macro_f1"] > state["best_metric"]:
        state["best_epoch"], state["best_metric"], state["bad_epochs"] = epoch, record["eval"]["macro_f1"], 0
    else:
        state["bad_epochs"] += 1
        if args.patience and state["bad_epochs"] >= args.patience:
            state["finished"] = state["stopped_early"] = True
    if epoch >= args.epochs:
        state["finished"] = True


def _save(output_dir: Path, module, optimizer, scheduler, scaler, state, dist: Dist) -> None:
    rng = {}
    for key, value in ckpt.rng_state().items():
        if dist.world > 1:
            parts = [torch.empty_like(value.to(dist.device)) for _ in range(dist.world)]
            torch.distributed.all_gather(parts, value.to(dist.device))
        else:
            parts = [value]
        rng.update({f"{key}.rank{r}": t.cpu() for r, t in enumerate(parts)})
    if dist.main:
        opt_tensors, opt_meta = ckpt.optimizer_state(optimizer)
        meta = {"train": state, "optimizer": opt_meta, "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None, "host_rng": ckpt.host_rng_state()}
        keep = {state["best_epoch"]} if state["best_epoch"] else set()
        ckpt.save(output_dir, state["epoch"], {"trainable": ckpt.trainable_state(module), "optimizer": opt_tensors,
                                               "rng": rng}, meta, keep)
    dist.barrier()


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def __getattr__(name: str) -> Any:
    if name == "TrainArgs":  # the loop's arguments became the public TrainingArguments
        import warnings

        warnings.warn("udtc.training.loop.TrainArgs is now udtc.TrainingArguments", DeprecationWarning, stacklevel=2)
        return TrainingArguments
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
