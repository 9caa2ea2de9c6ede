"""``udtc.finetune``: few-shot or full fine-tuning of a classifier on labelled texts."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from udtc import atomic, safety
from udtc.card import ModelCard
from udtc.classifier import Classifier
from udtc.config import CONFIG_NAME, UdtcConfig
from udtc.defaults import DEFAULT_MODEL
from udtc.runtime import resolve_device
from udtc.training import checkpoint as ckpt
from udtc.training import data as D
from udtc.training.loop import SCHEDULERS, TrainArgs, resolve_loss, run, setup_distributed, with_objective

METHODS = ("lora", "qlora", "full", "head")
OPTIMIZERS = ("adamw", "adamw_8bit")
LORA_DEFAULTS = {"lora_r": 8, "lora_alpha": 16.0, "lora_dropout": 0.1}
DEFAULT_LEARNING_RATES = {"full": 5e-5, "lora": 1e-3, "qlora": 2e-4, "head": 1e-3}
METRICS_FILE = "metrics.json"


def finetune(
    model: str | os.PathLike | Classifier | None,
    train: Any,
    *,
    eval: Any = None,
    text_column: str = "text",
    label_column: str = "label",
    label_separator: str | None = None,
    hypothesis_column: str | None = None,
    shots: int | None = None,
    method: str | None = None,
    epochs: int = 10,
    learning_rate: float | None = None,
    batch_size: int = 16,
    max_length: int | None = None,
    seed: int = 0,
    output_dir: str | os.PathLike = "udtc-finetuned",
    push_to_hub: str | None = None,
    overwrite: bool = False,
    merge: bool = False,
    gradient_accumulation_steps: int = 1,
    max_grad_norm: float | None = 1.0,
    warmup_ratio: float = 0.1,
    lr_scheduler: str = "linear",
    weight_decay: float = 0.01,
    patience: int | None = None,
    mixed_precision: str = "auto",
    lora_r: int | None = None,
    lora_alpha: float | None = None,
    lora_dropout: float | None = None,
    lora_target_modules: list[str] | str | None = None,
    optim: str = "adamw",
    gradient_checkpointing: bool | None = None,
    loss: str = "auto",
    focal_alpha: float | None = 0.7,
    focal_gamma: float = 2.0,
    negatives: int | None = None,
    label_synonyms: dict[str, list[str]] | None = None,
    synonym_rate: float = 0.5,
    backend: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    hub_private: bool = True,
    hub_token: str | None = None,
    **backend_options: Any,
) -> tuple[Classifier, dict[str, Any]]:
    """Fine-tune a classifier on labelled texts; returns ``(classifier, metrics)``.

    The trained labels are saved with the model, so ``classify(text)`` works without labels.
    ``output_dir`` receives a folder ``Classifier.from_pretrained`` loads, a model card
    (``README.md``) and ``metrics.json``. A checkpoint is written after every epoch; running the
    same call again after an interruption resumes it (see docs/finetune.md for the folder rule).

    Args:
        model: a model name or folder (as for ``Classifier.from_pretrained``; None = the default
            model) or a loaded ``Classifier`` (trained in place).
        train: a .csv/.tsv/.jsonl path, a list of dicts, a pandas DataFrame or a datasets.Dataset.
        eval: the same kinds; evaluated after each epoch, the best epoch (eval macro-F1) is kept.
        text_column: column (or key) holding the text.
        label_column: column holding the label (or a list of labels, for multi-label).
        label_separator: split label strings on it (e.g. ``"|"``) and train multi-label.
        hypothesis_column: train an NLI cross-encoder on premise/hypothesis pairs: ``text_column``
            holds the premise, this column the hypothesis, ``label_column`` an NLI class
            (entailment/neutral/contradiction or entailment/not_entailment). ``model`` is an NLI
            model or a plain encoder (which gets a new head, seeded with ``seed``); the backend is
            ``"nli"`` and ``method`` defaults to ``"full"``. The result keeps no labels of its own:
            it classifies zero-shot. See docs/finetune.md.
        shots: keep this many examples per label, drawn with ``seed``.
        method: ``"lora"``, ``"qlora"`` (CUDA + bitsandbytes), ``"full"`` or ``"head"``, as the
            backend allows (``Backend.supported_methods``); None picks the first the backend
            supports of lora, full, head (the default SCE model: full).
        epochs: passes over the training data.
        learning_rate: AdamW step size; by method when None (full 5e-5, lora 1e-3, qlora 2e-4, head 1e-3).
        batch_size: texts per forward pass (per process in a distributed run).
        max_length: token limit of the texts (a load option, so only when ``model`` is a name).
        seed: seeds sampling, shuffling, initialisation and dropout.
        output_dir: where the checkpoints and the final model go.
        push_to_hub: a Hub repo id (``"user/name"``) to upload the final folder to.
        overwrite: replace a non-empty ``output_dir`` (else only a matching unfinished run resumes).
        merge: LoRA: save the merged full weights instead of the adapter (no base needed to load).
        gradient_accumulation_steps: micro-batches per optimizer step.
        max_grad_norm: gradient clipping norm (None: no clipping).
        warmup_ratio: share of the optimizer steps spent warming the learning rate up from 0.
        lr_scheduler: ``"linear"``, ``"cosine"`` or ``"constant"`` after the warmup.
        weight_decay: AdamW decoupled weight decay, on weight matrices only.
        patience: stop after this many epochs without a better eval macro-F1 (needs ``eval``).
        mixed_precision: ``"auto"`` (bf16 or fp16 on CUDA, none on CPU), ``"no"``, ``"fp16"``, ``"bf16"``.
        lora_r, lora_alpha, lora_dropout: the LoRA rank, scale numerator and dropout; None: the
            backend's defaults (``Backend.lora_defaults``), else 8, 16 and 0.1.
        lora_target_modules: layers LoRA wraps; the backend's ``lora_targets``, else peft's default.
        optim: ``"adamw"``, or ``"adamw_8bit"`` (bitsandbytes 8-bit AdamW; CUDA only).
        gradient_checkpointing: recompute activations in the backward pass to save memory; None:
            on for ``"qlora"``, off otherwise.
        loss: ``"auto"`` (softmax cross-entropy single-label, sigmoid BCE multi-label), ``"ce"``, ``"bce"``
            or ``"focal"`` (sigmoid focal loss, as GLiClass trains).
        focal_alpha, focal_gamma: the focal loss's weight of positive labels (None: none) and exponent.
        negatives: train each batch on its gold labels plus this many other labels, sampled with ``seed``
            (GLiClass's sampled negatives); None: every training label.
        label_synonyms: training label -> other names for it; in each batch a label is shown as one
            of them with probability ``synonym_rate`` (the SCE paper's synonym augmentation;
            ``udtc.backends.sce_train.SYNONYMS`` is a preset for common labels). Evaluation and the
            saved labels use the real names.
        synonym_rate: that probability, in [0, 1].
        backend: force a backend when ``model`` is a name (``"gliclass"`` on a plain encoder folder builds a
            new GLiClass model on it, see docs/backends/gliclass.md).
        device: ``"cpu"``, ``"cuda"``, ``"mps"``; the best available when None.
        progress: show a progress bar with the loss.
        hub_private: create the Hub repo private (the default).
        hub_token: Hub token; else ``HF_TOKEN`` or the saved login.
        **backend_options: options of the backend, passed when loading ``model``.
    """
    started = time.perf_counter()
    if hypothesis_column is not None:
        backend, method = _pair_mode(model, backend, method)
    backend_cls = None
    if method is None:  # an explicit method is checked before the model is resolved (e.g. qlora without CUDA)
        backend_cls = type(model.backend) if isinstance(model, Classifier) else _backend_class(model, backend)
        method = next((m for m in ("lora", "full", "head") if m in backend_cls.supported_methods), "lora")
    args = _train_args(method, epochs, learning_rate, batch_size, gradient_accumulation_steps, max_grad_norm,
                       warmup_ratio, lr_scheduler, weight_decay, patience, mixed_precision, seed, lora_r, lora_alpha,
                       lora_dropout, lora_target_modules, progress, device, eval is not None, optim,
                       gradient_checkpointing)
    args = with_objective(args, loss=loss, focal_alpha=focal_alpha, focal_gamma=focal_gamma, negatives=negatives,
                          label_synonyms=label_synonyms, synonym_rate=synonym_rate)
    if shots is not None and (not isinstance(shots, int) or isinstance(shots, bool) or shots < 1):
        raise ValueError(f"shots must be a positive integer or None, got {shots!r}")
    if isinstance(model, Classifier):
        given = [*backend_options, *(k for k, v in (("max_length", max_length), ("backend", backend),
                                                     ("device", device)) if v is not None)]
        if given:
            raise ValueError(f"{sorted(given)} apply when finetune loads the model; model is already a Classifier, "
                             "so pass them to Classifier.from_pretrained instead")
    if backend_cls is None:
        backend_cls = type(model.backend) if isinstance(model, Classifier) else _backend_class(model, backend)
    if method not in backend_cls.supported_methods:
        allowed = ", ".join(sorted(backend_cls.supported_methods)) or "none: it cannot be fine-tuned yet"
        raise ValueError(f"method={method!r} is not supported by the {backend_cls.name!r} backend; it supports: {allowed}")
    for key, default in {**LORA_DEFAULTS, **backend_cls.lora_defaults}.items():
        if getattr(args, key) is None:
            setattr(args, key, type(LORA_DEFAULTS[key])(default))
    base_ref = _base_reference(model, method, merge)
    token = _hub_token(push_to_hub, hub_token, base_ref, method, merge)

    # ---- data (errors here cost no model loading)
    train_data = D.load_examples(train, text_column=text_column, label_column=label_column,
                                 label_separator=label_separator, what="train", hypothesis_column=hypothesis_column)
    nli_classes = None  # pair training: the classes of the NLI model trained on; None: a new head
    if hypothesis_column is not None:
        nli_classes = _nli_classes(model, method, merge, backend_options)
        train_data = D.nli_labels(train_data, nli_classes)
    if shots is not None:
        train_data = D.sample_shots(train_data, shots, seed)
    D.check_train(train_data)
    resolve_loss(args.loss, train_data.multi_label)
    eval_data = None
    if eval is not None:
        eval_data = D.load_examples(eval, text_column=text_column, label_column=label_column,
                                    label_separator=label_separator, what="eval", hypothesis_column=hypothesis_column)
        if hypothesis_column is not None:
            eval_data = D.nli_labels(eval_data, train_data.labels, what="eval")
        eval_data = D.check_eval(eval_data, train_data)

    # ---- output folder: new run, resume, or refuse (docs/finetune.md, checkpoint.py)
    dist = setup_distributed(_device_of(model.backend) if isinstance(model, Classifier) else resolve_device(device))
    try:
        out = Path(output_dir).expanduser()
        settings = {"model": base_ref, "backend": backend, "backend_options": backend_options, "max_length": max_length,
                    "train": train_data.fingerprint(), "eval": eval_data.fingerprint() if eval_data else None,
                    "shots": shots, "world_size": dist.world, **{k: v for k, v in vars(args).items() if k != "progress"},
                    **({"hypothesis_column": hypothesis_column} if hypothesis_column is not None else {})}
        if dist.main:
            atomic.recover(out)  # an interrupted final swap: the old folder back, leftovers gone
        dist.barrier()
        resume = ckpt.inspect_output_dir(out, settings, overwrite=overwrite)
        dist.barrier()
        if dist.main:
            ckpt.claim_output_dir(out, settings, resume=resume, overwrite=overwrite)
        dist.barrier()

        # ---- model
        if isinstance(model, Classifier):
            clf = model
        else:
            options = {**backend_options, **({"max_length": max_length} if max_length is not None else {})}
            if method == "qlora":
                options["load_in_4bit"] = True
            if hypothesis_column is not None and nli_classes is None:  # a plain encoder: a new seeded NLI head
                from udtc.backends.nli import NLIBackend
                from udtc.hub import resolve

                clf = Classifier(NLIBackend.from_encoder(resolve(model), train_data.labels, seed=seed,
                                                         device=dist.device, **options), base_model=base_ref)
            else:
                clf = Classifier.from_pretrained(model, backend=backend, device=dist.device, **options)
        impl = clf.backend

        # ---- train
        result = run(impl, train_data, eval_data, args, out, dist, resume=resume)

        # ---- save, card, metrics, upload
        metrics = _metrics(result, train_data, eval_data, time.perf_counter() - started)
        # a Classifier passed in is trained in place; an NLI model trained on pairs keeps classifying zero-shot
        clf.labels, clf.base_model = None if train_data.pairs else list(train_data.labels), base_ref
        if dist.main:
            card = _card(clf, train_data, eval_data, shots, args, metrics,
                         push_to_hub or safety.portable_name(str(out)), merge)
            written = _write_final(out, clf, result.peft_model, merge, card, metrics)
        elif result.peft_model is not None:
            from udtc.training.lora import merge_lora

            merge_lora(result.peft_model, impl)
        dist.barrier()
        if push_to_hub and dist.main:
            from udtc.training.hub import upload

            metrics["hub"] = upload(out, push_to_hub, token=token, private=hub_private, files=written)
    finally:
        if dist.created:
            torch.distributed.destroy_process_group()
    return clf, metrics


# ---------------------------------------------------------------------------------------------- checks
def _train_args(method, epochs, learning_rate, batch_size, accumulation, max_grad_norm, warmup_ratio, lr_scheduler,
                weight_decay, patience, mixed_precision, seed, lora_r, lora_alpha, lora_dropout, lora_target_modules,
                progress, device, has_eval, optim="adamw", gradient_checkpointing=None) -> TrainArgs:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if method == "qlora":
        _check_qlora(device)
    if optim not in OPTIMIZERS:
        raise ValueError(f"unknown optim {optim!r}; use one of {', '.join(OPTIMIZERS)}")
    if optim == "adamw_8bit":
        _check_qlora(device, what="optim='adamw_8bit'")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("gradient_accumulation_steps", accumulation),
                        *((("lora_r", lora_r),) if lora_r is not None else ())):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if patience is not None and (not isinstance(patience, int) or isinstance(patience, bool) or patience < 1):
        raise ValueError(f"patience must be a positive integer or None, got {patience!r}")
    if patience is not None and not has_eval:
        raise ValueError("patience (early stopping) needs eval data to watch; pass eval=...")
    learning_rate = DEFAULT_LEARNING_RATES[method] if learning_rate is None else learning_rate
    if not isinstance(learning_rate, (int, float)) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    if not 0 <= warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio!r}")
    if lr_scheduler not in SCHEDULERS:
        raise ValueError(f"unknown lr_scheduler {lr_scheduler!r}; use one of {', '.join(SCHEDULERS)}")
    if max_grad_norm is not None and not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be positive or None, got {max_grad_norm!r}")
    if lora_dropout is not None and not 0 <= lora_dropout < 1:
        raise ValueError(f"lora_dropout must be in [0, 1), got {lora_dropout!r}")
    return TrainArgs(method=method, epochs=epochs, learning_rate=float(learning_rate), batch_size=batch_size,
                     gradient_accumulation_steps=accumulation, max_grad_norm=max_grad_norm, warmup_ratio=warmup_ratio,
                     lr_scheduler=lr_scheduler, weight_decay=weight_decay, patience=patience,
                     mixed_precision=_mixed_precision(mixed_precision, device), seed=seed, lora_r=lora_r,
                     lora_alpha=None if lora_alpha is None else float(lora_alpha),
                     lora_dropout=None if lora_dropout is None else float(lora_dropout),
                     lora_target_modules=lora_target_modules, progress=progress, optim=optim,
                     gradient_checkpointing=method == "qlora" if gradient_checkpointing is None
                     else bool(gradient_checkpointing))


def _check_qlora(device, what: str = "method='qlora'") -> None:
    if not torch.cuda.is_available() or (device is not None and torch.device(device).type != "cuda"):
        raise ValueError(f"{what} needs a CUDA GPU (bitsandbytes) and none is available "
                         "here; use method='lora' (optim='adamw') on this machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ImportError(f"{what} needs bitsandbytes: pip install 'udtc[qlora]'") from None


def _mixed_precision(value: str, device) -> str:
    if value not in ("auto", "no", "fp16", "bf16"):
        raise ValueError(f"mixed_precision must be 'auto', 'no', 'fp16' or 'bf16', got {value!r}")
    on_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    if value == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if on_cuda else "no"
    if value != "no" and not on_cuda:
        raise ValueError(f"mixed_precision={value!r} runs on CUDA only; use 'no' (or 'auto') on this device")
    return value


def _base_reference(model, method: str, merge: bool) -> str:
    """What ``udtc_config.json`` names as ``base_model``: the string that loads the starting weights."""
    if model is None:
        return DEFAULT_MODEL
    if isinstance(model, Classifier):
        if model.labels is not None and method in ("lora", "qlora") and not merge:
            raise ValueError(f"this Classifier was fine-tuned already, so its weights are not those of its base_model "
                             f"{model.base_model!r} that a LoRA adapter would refer to; pass the folder it was loaded "
                             "from as model=..., or merge=True")
        model = model.base_model or "unknown"
    name = os.fspath(model)
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name  # a local folder by its absolute path


def _hub_token(repo_id: str | None, token: str | None, base_ref: str, method: str, merge: bool) -> str | None:
    """Checked before training: a repo id, a token, and (for an adapter) a base others can download."""
    if repo_id is None:
        return None
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"push_to_hub must be a Hub repo id like 'user/name', got {repo_id!r}")
    if method in ("lora", "qlora") and not merge and Path(base_ref).is_absolute():
        raise ValueError(f"the LoRA adapter would refer to its base by the local path {base_ref}, which users of the "
                         "Hub repo do not have; pass merge=True to upload full weights, or start from a Hub model id")
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise ValueError("push_to_hub needs a Hugging Face token and none was found: pass hub_token=..., set "
                         "HF_TOKEN, or run `hf auth login` (checked before training so no time is lost)")
    return token


def _pair_mode(model, backend: str | None, method: str | None) -> tuple[str | None, str]:
    """NLI pair training: the backend is nli (named, or implied) and the method defaults to full."""
    name = model.backend.name if isinstance(model, Classifier) else backend or "nli"
    if name != "nli":
        raise ValueError(f"hypothesis_column trains an NLI cross-encoder, which is the 'nli' backend, not {name!r}; "
                         "start from an NLI model or a plain encoder")
    return (None if isinstance(model, Classifier) else "nli"), method or "full"


def _nli_classes(model, method: str, merge: bool, backend_options: dict) -> list[str] | None:
    """The NLI classes of the model pair training starts from (config.json only), or None for a plain
    encoder, which gets a new head."""
    from udtc.backends.nli import NLIBackend, _read_json
    from udtc.hub import resolve

    if isinstance(model, Classifier):
        return model.backend.classes
    folder = resolve(model)
    config = _read_json(folder / "config.json") if folder.is_dir() else None
    if NLIBackend.detect(folder):
        return [name for name, _ in sorted(config["label2id"].items(), key=lambda item: item[1])]
    if not isinstance(config, dict) or not config.get("model_type"):
        raise ValueError(f"{folder} holds neither an NLI model nor a transformers encoder (config.json with a "
                         "model_type) to train an NLI cross-encoder from")
    if any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        raise ValueError(f"{folder} is a sequence-classification model without an entailment label "
                         f"({sorted(config.get('label2id') or {})}); start from an NLI model or a plain encoder")
    unknown = sorted(set(backend_options) - {"trust_remote_code"})
    if unknown:
        raise TypeError(f"nli backend got unknown options {unknown}; a new NLI head takes ['max_length', "
                        "'trust_remote_code']")
    if method in ("lora", "qlora") and not merge:
        raise ValueError(f"{folder} is a plain encoder, so it gets a new NLI head, which a LoRA adapter saved by "
                         "reference to the encoder cannot hold; pass merge=True or method='full'")
    return None


def _device_of(backend) -> torch.device:
    return next(backend.trainable_module().parameters()).device


def _backend_class(model, backend: str | None):
    """The backend class ``Classifier.from_pretrained(model)`` would use, without loading weights."""
    from udtc.backends import detect_backend, get_backend
    from udtc.hub import resolve

    if backend is not None:
        return get_backend(backend)
    folder = resolve(model)
    if folder.is_dir() and (folder / CONFIG_NAME).exists():
        return get_backend(UdtcConfig.load(folder).backend)
    return get_backend(detect_backend(folder))


# ---------------------------------------------------------------------------------------------- results
def _metrics(result, train_data: D.Examples, eval_data: D.Examples | None, seconds: float) -> dict[str, Any]:
    best = next((r for r in result.history if r["epoch"] == result.best_epoch), None)
    return {
        "eval": best.get("eval") if best else None,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from_epoch,
        "train_loss": result.history[-1]["train_loss"] if result.history else None,
        "train_examples": len(train_data),
        "eval_examples": len(eval_data) if eval_data else 0,
        "labels": list(train_data.labels),
        "history": result.history,
        "wall_time_s": round(seconds, 2),
    }


def _card(clf: Classifier, train_data, eval_data, shots, args: TrainArgs, metrics, load_name: str, merge: bool) -> ModelCard:
    from udtc.training.lora import LORA_CITATION, QLORA_CITATION

    adapter = args.method in ("lora", "qlora")
    kind = " (merged into full weights)" if adapter and merge else " (adapter only: loading fetches the base model)" if adapter else ""
    hyper = {"method": args.method + kind,
             "epochs": args.epochs, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
             "gradient_accumulation_steps": args.gradient_accumulation_steps, "lr_scheduler": args.lr_scheduler,
             "warmup_ratio": args.warmup_ratio, "weight_decay": args.weight_decay, "seed": args.seed}
    if adapter:
        hyper.update(lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout)
    if args.optim != "adamw" or args.gradient_checkpointing:
        hyper.update(optim=args.optim, gradient_checkpointing=args.gradient_checkpointing)
    if args.loss != "auto" or args.negatives is not None:
        hyper.update(loss=args.loss, negatives=args.negatives)
        if args.loss == "focal":
            hyper.update(focal_alpha=args.focal_alpha, focal_gamma=args.focal_gamma)
    if args.label_synonyms:
        hyper.update(label_synonyms=json.dumps(args.label_synonyms), synonym_rate=args.synonym_rate)
    stats = {"train examples": len(train_data), "examples per label": train_data.counts(),
             "multi-label": train_data.multi_label, "skipped train rows": train_data.skipped}
    if shots is not None:
        stats["shots per label"] = shots
    if eval_data is not None:
        stats["eval examples"] = len(eval_data)
    shown = {"best epoch": metrics["best_epoch"], "final train loss": round(metrics["train_loss"], 4)}
    if metrics["eval"]:
        shown.update({f"eval {k}": round(v, 4) if isinstance(v, float) else v for k, v in metrics["eval"].items()})
    citations = [c for c in (clf.backend.citation, LORA_CITATION if args.method == "lora" else "",
                             QLORA_CITATION if args.method == "qlora" else "") if c]
    return ModelCard(backend=clf.backend.name, base_model=clf.base_model, labels=clf.labels,
                     title=f"udtc nli cross-encoder trained on {len(train_data)} premise/hypothesis pairs"
                     if train_data.pairs else f"udtc {clf.backend.name} classifier fine-tuned on {len(clf.labels)} labels",
                     label_examples=D.label_examples(train_data), data_statistics=stats, hyperparameters=hyper,
                     metrics=shown, citations=citations, load_name=load_name)


def _write_final(out: Path, clf: Classifier, peft_model, merge: bool, card: ModelCard, metrics: dict) -> list[str]:
    """Write the final model next to the checkpoints, move it into ``out``, then drop the checkpoints.

    Safe at every point (README, Safety): until the model is in place, ``checkpoints/run.json`` stays
    and a rerun resumes and writes it again; an earlier output replaced with ``overwrite=True`` is
    removed only once the new model is complete; ``run.json`` goes first in the cleanup, so a rerun
    never resumes from half-removed checkpoints. Files in ``out`` that udtc did not write stay.
    Returns the files written, which are all an upload may send."""
    from udtc.training.lora import merge_lora

    tmp = out / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if peft_model is not None and not merge:
        tmp.mkdir()
        peft_model.save_pretrained(tmp)  # adapter_config.json + adapter_model.safetensors, no base weights
        clf.backend.save_adapter_files(tmp)  # e.g. a head's config and the tokenizer
        config = clf.config
        config.base_model = safety.bundle_base(tmp, clf.base_model)  # a local base is copied in: no outside paths
        config.save(tmp)
        (tmp / "README.md").write_text(card.render(), encoding="utf-8")
        merge_lora(peft_model, clf.backend)  # in memory the classifier scores like the reloaded folder
    else:
        if peft_model is not None:
            merge_lora(peft_model, clf.backend)
        clf.save_pretrained(tmp, card=card)
    (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    written = atomic.files_in(tmp)
    atomic.fault("finetune:final-written")
    for name in ckpt.replaced(out):  # the earlier output (overwrite=True), now that the new model is complete
        if not (tmp / name).exists():
            atomic.remove(out / name)
    for item in tmp.iterdir():
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    tmp.rmdir()
    atomic.fault("finetune:model-in-place")
    ckpt.remove(out)
    return written
