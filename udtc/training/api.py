"""``udtc.finetune``: few-shot or full fine-tuning of a classifier on labelled texts."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, cast

import torch

from udtc import atomic, safety
from udtc.backends import detect_backend, get_backend
from udtc.backends.base import Backend, Trainable
from udtc.card import ModelCard
from udtc.classifier import Classifier
from udtc.compat import quiet_loading
from udtc.hub import resolve
from udtc.config import CONFIG_NAME, UdtcConfig
from udtc.defaults import DEFAULT_MODEL
from udtc.onnx_runtime import refuse_exported
from udtc.runtime import resolve_device
from udtc.training import checkpoint as ckpt
from udtc.training import data as D
from udtc.training.args import ADAPTER_METHODS, BY_REFERENCE, TrainingArguments
from udtc.training.lora import LORA_CITATION, QLORA_CITATION, merge_lora
from udtc.training.losses import resolve_loss
from udtc.training.loop import run, setup_distributed
from udtc.training.pairs import pair_backend, pair_classes

METRICS_FILE = "metrics.json"


def finetune(
    model: str | os.PathLike | Classifier | None,
    train: Any,
    args: TrainingArguments | None = None,
    *,
    eval: Any = None,
    text_column: str = "text",
    label_column: str = "label",
    label_separator: str | None = None,
    hypothesis_column: str | None = None,
    max_length: int | None = None,
    backend: str | None = None,
    device: str | torch.device | None = None,
    **overrides: Any,
) -> tuple[Classifier, dict[str, Any]]:
    """Fine-tune a classifier on labelled texts; returns ``(classifier, metrics)``.

    The trained labels are saved with the model, so ``classify(text)`` works without labels.
    ``args.output_dir`` receives a folder ``Classifier.from_pretrained`` loads, a model card
    (``README.md``) and ``metrics.json``. A checkpoint is written after every epoch; running the
    same call again after an interruption resumes it (see docs/finetune.md for the folder rule).

    Args:
        model: a model name or folder (as for ``Classifier.from_pretrained``; None = the default
            model) or a loaded ``Classifier`` (trained in place).
        train: a .csv/.tsv/.jsonl path, a list of dicts, a pandas DataFrame or a datasets.Dataset.
        args: the training settings (:class:`~udtc.training.args.TrainingArguments`); defaults when None.
        eval: the same kinds as ``train``; evaluated after each epoch, the best epoch (eval macro-F1) is kept.
        text_column: column (or key) holding the text.
        label_column: column holding the label (or a list of labels, for multi-label).
        label_separator: split label strings on it (e.g. ``"|"``) and train multi-label.
        hypothesis_column: train a premise/hypothesis pair model (an NLI cross-encoder, the backend whose
            ``trains_pairs`` is set): ``text_column`` holds the premise, this column the hypothesis,
            ``label_column`` a class (entailment/neutral/contradiction or entailment/not_entailment).
            ``model`` is such a model or a plain encoder (which gets a new head, seeded with ``seed``);
            ``method`` defaults to ``"full"``. The result keeps no labels of its own: it classifies
            zero-shot. See docs/finetune.md.
        max_length: token limit of the texts (a load option, so only when ``model`` is a name).
        backend: force a backend when ``model`` is a name (``"gliclass"`` on a plain encoder folder builds a
            new GLiClass model on it, see docs/backends/gliclass.md).
        device: ``"cpu"``, ``"cuda"``, ``"mps"``; the best available when None.
        **overrides: fields of ``TrainingArguments`` (``epochs=3``, ``output_dir=...``: they replace those
            of ``args``); any other keyword is an option of the backend, passed when loading ``model``.
    """
    started = time.perf_counter()
    names = {f.name for f in fields(TrainingArguments)}
    given = {k: overrides.pop(k) for k in list(overrides) if k in names}
    backend_options = overrides
    args = replace(args, **given) if args is not None else TrainingArguments(**given)
    args.check_context(device, has_eval=eval is not None)  # e.g. qlora without CUDA: before the model is resolved
    pair_cls = None
    if hypothesis_column is not None:
        pair_cls = pair_backend(model, backend)
        backend = None if isinstance(model, Classifier) else pair_cls.name
        args = replace(args, method=args.method or "full")
    if isinstance(model, Classifier):
        load_only = [*backend_options, *(k for k, v in (("max_length", max_length), ("backend", backend),
                                                         ("device", device)) if v is not None)]
        if load_only:
            raise ValueError(f"{sorted(load_only)} apply when finetune loads the model; model is already a Classifier, "
                             "so pass them to Classifier.from_pretrained instead")
        refuse_exported(model.backend, "fine-tuning")
    found: type[Backend] = type(model.backend) if isinstance(model, Classifier) else _backend_class(model, backend)
    backend_cls = found if issubclass(found, Trainable) else None
    args = args.resolved(backend_cls.supported_methods if backend_cls else frozenset(),
                         backend_cls.lora_defaults if backend_cls else {}, backend=found.name, device=device,
                         has_eval=eval is not None, recipes=backend_cls.training_recipes if backend_cls else None,
                         explicit=frozenset(given))
    assert args.method is not None and backend_cls is not None  # resolved() refused anything else
    method, merge, seed = args.method, args.merge, args.seed
    base_ref = _base_reference(model, method, merge)
    token = _hub_token(args.push_to_hub, args.hub_token, base_ref, method, merge)

    # ---- data (errors here cost no model loading)
    train_data = D.load_examples(train, text_column=text_column, label_column=label_column,
                                 label_separator=label_separator, what="train", hypothesis_column=hypothesis_column)
    classes = None  # pair training: the classes of the model trained on; None: a new head
    if pair_cls is not None:
        classes = pair_classes(model, pair_cls, method=method, merge=merge, options=backend_options)
        train_data = pair_cls.pair_targets(train_data, classes)
    if args.shots is not None:
        train_data = D.sample_shots(train_data, args.shots, seed)
    D.check_train(train_data, args.label_synonyms)
    resolve_loss(args.loss, train_data.multi_label, args.method)
    if args.objective == "ppo" and not (train_data.multi_label and args.method != "instruction"):
        raise ValueError("objective='ppo' trains multi-label data (one Bernoulli decision per label, GLiClass "
                         "Sec. 2.3.2); give rows with several labels (label_separator=...) or use the default objective")
    eval_data = None
    if eval is not None:
        eval_data = D.load_examples(eval, text_column=text_column, label_column=label_column,
                                    label_separator=label_separator, what="eval", hypothesis_column=hypothesis_column)
        if pair_cls is not None:
            eval_data = pair_cls.pair_targets(eval_data, train_data.labels, what="eval")
        eval_data = D.check_eval(eval_data, train_data)

    # ---- output folder: new run, resume, or refuse (docs/finetune.md, checkpoint.py)
    dist = setup_distributed(_device_of(model.backend) if isinstance(model, Classifier) else resolve_device(device))
    try:
        out = Path(args.output_dir).expanduser()
        settings = {"model": base_ref, "backend": backend, "backend_options": backend_options, "max_length": max_length,
                    "train": train_data.fingerprint(), "eval": eval_data.fingerprint() if eval_data else None,
                    "shots": args.shots, "world_size": dist.world, **args.training_settings(),
                    **({"hypothesis_column": hypothesis_column} if hypothesis_column is not None else {})}
        if dist.main:
            atomic.recover(out)  # an interrupted final swap: the old folder back, leftovers gone
        dist.barrier()
        resume = ckpt.inspect_output_dir(out, settings, overwrite=args.overwrite)
        existed = out.exists()
        dist.barrier()
        if dist.main:
            ckpt.claim_output_dir(out, settings, resume=resume, overwrite=args.overwrite)
        dist.barrier()
        try:
            clf, metrics = _train_and_save(model, out, args, train_data, eval_data, classes, pair_cls, backend_cls,
                                           backend_options, max_length, backend, base_ref, token, dist, resume, started)
        except BaseException:
            if dist.main and not resume:
                ckpt.forget_untrained_run(out, remove_folder=not existed)
            raise
    finally:
        if dist.created:
            torch.distributed.destroy_process_group()
    return clf, metrics


def _train_and_save(model, out: Path, args: TrainingArguments, train_data, eval_data, classes, pair_cls, backend_cls,
                    backend_options: dict[str, Any], max_length, backend, base_ref: str, token, dist, resume: bool,
                    started: float) -> tuple[Classifier, dict[str, Any]]:
    method, merge, seed = args.method, args.merge, args.seed

    # ---- model
    if isinstance(model, Classifier):
        clf = model
    else:
        options = {**backend_options, **({"max_length": max_length} if max_length is not None else {}),
                   **backend_cls.training_load_options(method)}
        if pair_cls is not None and classes is None:  # a plain encoder: a new seeded head
            clf = Classifier(pair_cls.new_for_pairs(resolve(model), train_data.labels, seed=seed,
                                                    device=dist.device, **options), base_model=base_ref)
        else:
            clf = Classifier.from_pretrained(model, backend=backend, device=dist.device, **options)
    impl = clf.backend
    assert isinstance(impl, Trainable)  # the class checked above

    # ---- train
    result = run(impl, train_data, eval_data, args, out, dist, resume=resume)

    # ---- save, card, metrics, upload
    metrics = _metrics(result, train_data, eval_data, time.perf_counter() - started)
    # a Classifier passed in is trained in place; a pair model keeps classifying zero-shot
    clf.labels, clf.base_model = None if train_data.pairs else list(train_data.labels), base_ref
    clf.source = None  # trained in memory: a further adapter must refer to the saved folder, not to base_ref
    if dist.main:
        card = _card(clf, train_data, eval_data, args.shots, args, metrics, args.push_to_hub or out.name, merge)
        with quiet_loading():  # no "Writing model shards" bar
            written = _write_final(out, clf, result.peft_model, merge, card, metrics, result.sparse)
    elif result.peft_model is not None:
        merge_lora(result.peft_model, impl)
    dist.barrier()
    if args.push_to_hub and dist.main:
        from udtc.hub import upload

        assert token is not None
        metrics["hub"] = upload(out, args.push_to_hub, token=token, private=args.hub_private, files=written)
    return clf, metrics


# ---------------------------------------------------------------------------------------------- checks
def _base_reference(model, method: str, merge: bool) -> str:
    """What ``udtc_config.json`` names as ``base_model``: the string that loads the starting weights."""
    if model is None:
        return DEFAULT_MODEL
    if isinstance(model, Classifier):
        if model.source is None and method in BY_REFERENCE and not merge:
            raise ValueError(f"this Classifier was fine-tuned already (or built in code), so no saved folder holds its weights "
                             f"and its base_model {model.base_model!r} would be the wrong base for a LoRA adapter (or sparse "
                             "change); pass the folder it was saved to as model=..., or merge=True")
        model = model.source if method in BY_REFERENCE and not merge else model.base_model or model.source or "unknown"
    name = os.fspath(model)
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name  # a local folder by its absolute path


def _hub_token(repo_id: str | None, token: str | None, base_ref: str, method: str, merge: bool) -> str | None:
    """Checked before training: a repo id, a token, and (for an adapter) a base others can download."""
    if repo_id is None:
        return None
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"push_to_hub must be a Hub repo id like 'user/name', got {repo_id!r}")
    if method in BY_REFERENCE and not merge and Path(base_ref).is_absolute():
        raise ValueError(f"the LoRA adapter would refer to its base by the local path {base_ref}, which users of the "
                         "Hub repo do not have; pass merge=True to upload full weights, or start from a Hub model id")
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise ValueError("push_to_hub needs a Hugging Face token and none was found: pass hub_token=..., set "
                         "HF_TOKEN, or run `hf auth login` (checked before training so no time is lost)")
    return token


def _device_of(backend) -> torch.device:
    return next(backend.trainable_module().parameters()).device


def _backend_class(model: Any, backend: str | None) -> type[Backend]:
    """The backend class ``Classifier.from_pretrained(model)`` would use, without loading weights."""
    folder = resolve(model)
    config = UdtcConfig.load(folder) if folder.is_dir() and (folder / CONFIG_NAME).exists() else None
    if config and config.runtime:
        raise ValueError(f"{folder} is an ONNX export (udtc export), which cannot be fine-tuned: fine-tune the "
                         "model it was exported from, then export again")
    return get_backend(backend or (config.backend if config else detect_backend(folder)))


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


def _card(clf: Classifier, train_data, eval_data, shots, args: TrainingArguments, metrics, load_name: str,
          merge: bool) -> ModelCard:
    method = str(args.method)
    adapter = method in ADAPTER_METHODS
    what = "adapter" if adapter else "sparse change"
    kind = (" (merged into full weights)" if merge else f" ({what} only: loading fetches the base model)") \
        if method in BY_REFERENCE else ""
    hyper = {"method": method + kind,
             "epochs": args.epochs, "learning_rate": args.learning_rate, "batch_size": args.batch_size,
             "gradient_accumulation_steps": args.gradient_accumulation_steps, "lr_scheduler": args.lr_scheduler,
             "warmup_ratio": args.warmup_ratio, "weight_decay": args.weight_decay, "seed": args.seed}
    if adapter:
        hyper.update(lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout)
    if method == "sparse":
        hyper.update(sparse_fraction=args.sparse_fraction, sparse_tokens=args.sparse_tokens)
    if args.optim != "adamw" or args.gradient_checkpointing:
        hyper.update(optim=args.optim, gradient_checkpointing=args.gradient_checkpointing)
    if args.objective == "ppo":
        hyper.update(objective="ppo", ppo_clip=args.ppo_clip, ppo_iterations=args.ppo_iterations)
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
    method_citation = cast(Trainable, clf.backend).method_citations.get(str(args.method), "")
    if args.objective == "ppo":
        from udtc.training.ppo import CITATION as PPO_CITATION

        method_citation = "\n".join(c for c in (method_citation, PPO_CITATION) if c and c != clf.backend.citation)
    citations = [c for c in (clf.backend.citation, method_citation, LORA_CITATION if args.method in ("lora", "instruction") else "",
                             QLORA_CITATION if args.method == "qlora" else "") if c]
    return ModelCard(backend=clf.backend.name, base_model=clf.base_model, labels=clf.labels,
                     title=f"udtc nli cross-encoder trained on {len(train_data)} premise/hypothesis pairs"
                     if train_data.pairs else f"udtc {clf.backend.name} classifier fine-tuned on {len(clf.labels or [])} labels",
                     label_examples=D.label_examples(train_data), data_statistics=stats, hyperparameters=hyper,
                     metrics=shown, citations=citations, load_name=load_name)


def _write_final(out: Path, clf: Classifier, peft_model, merge: bool, card: ModelCard, metrics: dict,
                 sparse=None) -> list[str]:
    """Write the final model next to the checkpoints, move it into ``out``, then drop the checkpoints.

    Safe at every point (README, Safety): until the model is in place, ``checkpoints/run.json`` stays
    and a rerun resumes and writes it again; an earlier output replaced with ``overwrite=True`` is
    removed only once the new model is complete; ``run.json`` goes first in the cleanup, so a rerun
    never resumes from half-removed checkpoints. Files in ``out`` that udtc did not write stay.
    Returns the files written, which are all an upload may send."""
    backend = cast(Trainable, clf.backend)
    tmp = out / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if peft_model is not None and not merge:
        tmp.mkdir()
        peft_model.save_pretrained(tmp)  # adapter_config.json + adapter_model.safetensors, no base weights
        backend.save_adapter_files(tmp)  # e.g. a head's config and the tokenizer
        config = clf.config
        config.base_model = safety.bundle_base(tmp, clf.base_model)  # a local base is copied in: no outside paths
        config.save(tmp)
        (tmp / "README.md").write_text(card.render(), encoding="utf-8")
        merge_lora(peft_model, backend)  # in memory the classifier scores like the reloaded folder
    elif sparse is not None and not merge:
        from udtc.training.sparse import save_delta

        tmp.mkdir()
        save_delta(backend.trainable_module(), sparse, tmp)  # the change of the trained entries only
        backend.save_adapter_files(tmp)
        config = clf.config
        config.base_model = safety.bundle_base(tmp, clf.base_model)
        config.options = _own_options(config, tmp)
        config.save(tmp)
        (tmp / "README.md").write_text(card.render(), encoding="utf-8")
    else:
        if peft_model is not None:
            merge_lora(peft_model, backend)
        clf.save_pretrained(tmp, card=card)
    (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    atomic.honour_umask_tree(tmp)  # peft/transformers write weights 0600
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


def _own_options(config: UdtcConfig, folder: Path) -> dict[str, Any]:
    """The options of a change saved by reference that its base's own ``udtc_config.json`` does not already
    give (e.g. SCE's ``embedder``, a path inside the base folder, not inside the change's folder)."""
    try:
        base = folder / str(config.base_model) if (folder / str(config.base_model)).is_dir() else resolve(config.base_model)
        own = UdtcConfig.load(base) if (base / CONFIG_NAME).exists() else None
    except (OSError, ValueError):
        own = None
    if own is None or own.backend != config.backend:
        return config.options
    return {k: v for k, v in config.options.items() if own.options.get(k) != v}
