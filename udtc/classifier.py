"""The public entry point: ``Classifier.from_pretrained(...).classify(text, labels)``.

One call flows: resolve (folder, package or Hub id) -> load (registry backend) -> validate
inputs -> group texts by label set -> batch (longest texts first) -> ``backend.score`` ->
normalise (softmax or sigmoid) -> thresholds -> :class:`Prediction`.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch

from udtc import atomic, safety
from udtc.backends import Backend, detect_backend, get_backend
from udtc.backends.base import Trainable
from udtc.calibration import Calibration, calibrate
from udtc.decide import decide, prediction as _prediction, thresholds as _thresholds
from udtc.card import ModelCard
from udtc.config import ADAPTER_CONFIG, ADAPTER_WEIGHTS, CONFIG_NAME, UdtcConfig
from udtc.defaults import DEFAULT_MODEL
from udtc.hub import named_model, resolve, saved_options
from udtc.prediction import Prediction
from udtc.priors import PriorCorrection, get_prior
from udtc.runtime import resolve_device, resolve_dtype

LabelSpec = Sequence[str] | Mapping[str, str]


class Classifier:
    """Scores texts against labels chosen at call time, with any registered backend."""

    def __init__(self, backend: Backend, *, labels: list[str] | None = None, base_model: str | None = None,
                 calibration: Calibration | None = None):
        self.backend = backend
        self.labels = labels
        self.base_model = base_model
        self.calibration = calibration  # udtc/calibration.py: applied in the decide step, saved as calibration.json

    calibrate = calibrate  # Classifier.calibrate(dev, ...) -> a new calibrated Classifier (udtc/calibration.py)

    def uncalibrated(self) -> Classifier:
        """This classifier without its calibration (same weights)."""
        return Classifier(self.backend, labels=self.labels, base_model=self.base_model)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def config(self) -> UdtcConfig:
        return UdtcConfig(backend=self.backend.name, options=self.backend.options, labels=self.labels,
                          base_model=safety.portable_name(self.base_model))

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike | None = None,
        *,
        backend: str | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        revision: str | None = None,
        token: str | None = None,
        **backend_options: Any,
    ) -> Classifier:
        """Load a classifier from a local folder, a Hub id, or (``None``) the embedded default.

        Args:
            name_or_path: folder, file (e.g. ``.gguf``), Hugging Face Hub id, or None.
            backend: force a backend (see ``udtc.available_backends()``); detected otherwise.
            device: ``"cpu"``, ``"cuda"``, ``"mps"``; the best available one when None.
            dtype: e.g. ``"float16"``; each backend's default when None.
            revision: Hub branch, tag or commit.
            token: Hub token for private repos.
            **backend_options: options of the chosen backend (e.g. ``scale=`` for cosine).
        """
        folder = resolve(name_or_path, revision=revision, token=token,
                         trust_remote_code=bool(backend_options.get("trust_remote_code", False)))
        config = UdtcConfig.load(folder) if folder.is_dir() and (folder / CONFIG_NAME).exists() else None
        name = backend or (config.backend if config else detect_backend(folder))
        backend_cls = get_backend(name)
        saved = (saved_options(folder, config.options, backend_options, token=token)
                 if config and config.backend == name else {})
        options = {**saved, **backend_options}
        if (folder / ADAPTER_CONFIG).exists():  # a LoRA adapter from udtc.finetune: base + adapter, merged
            impl = cls._with_adapter(folder, config, device=resolve_device(device), dtype=resolve_dtype(dtype),
                                     options=options, token=token)
        else:
            impl = _load_backend(backend_cls, folder, device=resolve_device(device), dtype=resolve_dtype(dtype),
                                 options=options)
        base = config.base_model if config and config.base_model else os.fspath(name_or_path or DEFAULT_MODEL)
        calibration = Calibration.load(folder) if folder.is_dir() else None
        return cls(impl, labels=config.labels if config else None, base_model=base, calibration=calibration)

    @classmethod
    def _with_adapter(cls, folder: Path, config: UdtcConfig | None, *, device: torch.device, dtype: torch.dtype | None,
                      options: dict[str, Any], token: str | None) -> Backend:
        """The backend of ``config.base_model`` with the LoRA adapter in ``folder`` merged in (peft)."""
        if config is None or not config.base_model:
            raise ValueError(f"{folder} holds a LoRA adapter but no udtc_config.json naming its base_model")
        if not (folder / ADAPTER_WEIGHTS).exists():
            raise ValueError(f"{folder} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}; udtc loads safetensors only (no pickle)")
        try:
            base_ref = named_model(folder, config.base_model, "base_model", token=token,
                                          trust_remote_code=bool(options.get("trust_remote_code", False)))
            base = cls.from_pretrained(base_ref, backend=config.backend, device=device, dtype=dtype,
                                       token=token, **options)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"the LoRA adapter in {folder} needs its base model {config.base_model!r}, "
                                    f"which cannot be found: {err}") from None
        backend = base.backend
        if not isinstance(backend, Trainable):
            raise ValueError(f"{folder} holds a LoRA adapter, but the {backend.name!r} backend cannot be fine-tuned")
        from peft import PeftModel

        backend.prepare_adapter(folder)  # e.g. a head of the saved shape, which the adapter's modules_to_save fill
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = PeftModel.from_pretrained(backend.trainable_module(), folder)
        merged = peft_model.merge_and_unload()  # in place: the backend keeps scoring with the same module
        assert merged is backend.trainable_module(), "peft replaced the module instead of merging in place"
        backend.clear_cache()
        return backend

    # ------------------------------------------------------------------ inference
    def classify(
        self,
        texts: str | Sequence[str],
        labels: LabelSpec | Sequence[LabelSpec] | None = None,
        *,
        multi_label: bool = False,
        threshold: float | Mapping[str, float] | None = None,
        top_k: int | None = None,
        template: str | None = None,
        batch_size: int = 32,
        progress: bool | None = None,
        prior: str | PriorCorrection | None = None,
        **options: Any,
    ) -> Prediction | list[Prediction]:
        """Classify one text (returns a Prediction) or a list of texts (returns a list).

        Args:
            texts: a string, or a sequence of strings.
            labels: a list of label names; a dict ``{name: description}`` (the description is what
                the model reads); or one such set per text. None uses the model's own labels.
            multi_label: score each label independently (sigmoid) instead of one softmax.
            threshold: in [0, 1], global or per label (dict). Multi-label: labels at or above it
                are chosen (default 0.5). Single-label: the top label is kept only when its score
                reaches it, else ``label`` is None (default: always keep it).
            top_k: how many labels ``Prediction.labels`` lists (single-label default 1).
            template: how a label becomes model input, e.g. ``"This text is about {}."``;
                the backend's default when None.
            batch_size: texts (or text-label pairs, for pair backends) per forward pass.
            progress: show a progress bar; by default only when there is more than one batch.
            prior: single-label: ``"batch"`` or ``"sinkhorn"`` removes each label's prior estimated over
                the texts of this call (per label set; udtc/priors.py), or a callable (logits, labels) -> logits.
            **options: backend-specific options (e.g. ``examples=`` for GLiClass).
        """
        single = isinstance(texts, str)
        text_list = _check_texts([texts] if single else texts)
        label_sets = _label_sets(labels if labels is not None else self.labels, len(text_list), single)
        template = self.backend.default_template if template is None else template
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(f"template must be a string with exactly one '{{}}' for the label, got {template!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
        unknown = sorted(set(options) - self.backend.score_options)
        if unknown:
            allowed = ", ".join(sorted(self.backend.score_options)) or "none"
            raise TypeError(f"classify() got options {unknown} that the {self.backend.name!r} backend does not take (it takes: {allowed})")
        for names, _ in label_sets:
            if not multi_label and len(names) < 2:
                raise ValueError(
                    f"single-label classification needs at least two labels, got {list(names)}; "
                    "add labels or pass multi_label=True to score a label on its own"
                )
        thresholds = _thresholds(threshold, label_sets, multi_label)
        correction = get_prior(prior, multi_label)
        if self.calibration is not None:
            self.calibration.check([names for names, _ in label_sets], multi_label, threshold is not None)
            thresholds = self.calibration.thresholds(multi_label) if threshold is None else thresholds

        # Group texts that share a label set, longest texts first so batches pad little.
        groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]] = {}
        for i, (names, inputs) in enumerate(label_sets):
            groups.setdefault((names, tuple(template.replace("{}", x) for x in inputs)), []).append(i)
        probs: list[torch.Tensor | None] = [None] * len(text_list)
        truncated = [False] * len(text_list)
        bar = _progress(len(text_list), progress, batch_size)
        for (names, inputs), indices in groups.items():
            indices.sort(key=lambda i: -len(text_list[i]))
            group_logits = []
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                with torch.inference_mode():
                    out = self.backend.score([text_list[i] for i in chunk], list(inputs), multi_label=multi_label,
                                             batch_size=batch_size, **options)
                logits = out.logits.detach().float().cpu()
                if logits.shape != (len(chunk), len(inputs)):
                    raise RuntimeError(f"backend {self.backend.name!r} returned logits of shape {tuple(logits.shape)}, "
                                       f"expected {(len(chunk), len(inputs))}")
                group_logits.append(logits)
                for row, i in enumerate(chunk):
                    truncated[i] = bool(out.truncated[row])
                if bar is not None:
                    bar.update(len(chunk))
            p = decide(torch.cat(group_logits), names, multi_label, self.calibration, correction)  # (n, L)
            for row, i in enumerate(indices):
                probs[i] = p[row]
        if bar is not None:
            bar.close()
        if any(truncated):
            warnings.warn(f"{sum(truncated)} text(s) exceeded the model's maximum length and were truncated "
                          "(see Prediction.truncated)", stacklevel=2)

        results = [
            _prediction(text_list[i], label_sets[i][0], cast(torch.Tensor, probs[i]), multi_label, thresholds, top_k,
                        truncated[i])
            for i in range(len(text_list))
        ]
        return results[0] if single else results

    __call__ = classify

    def classify_iter(self, texts: Iterable[str], labels: LabelSpec | None = None, *, chunk_size: int = 1024,
                      **kwargs: Any) -> Iterator[Prediction]:
        """Yield one Prediction per text of ``texts`` (any iterable, e.g. a file's lines), in input order,
        holding at most ``chunk_size`` texts and their predictions in memory; ``labels`` is one label set
        shared by every text; other arguments as :meth:`classify`."""
        if isinstance(texts, (str, bytes)):
            raise TypeError("classify_iter takes an iterable of texts; for one text use classify(text, labels)")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        kwargs.setdefault("progress", False)
        it = iter(texts)
        while chunk := list(itertools.islice(it, chunk_size)):
            yield from cast(list, self.classify(chunk, labels, **kwargs))

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, path: str | os.PathLike, *, overwrite: bool = False, card: ModelCard | None = None) -> Path:
        """Write a self-contained, safetensors-only folder that ``from_pretrained`` loads.

        A non-empty ``path`` is never replaced unless ``overwrite=True``; the folder is written
        next to it first and swapped into place only when complete, so the old folder or the new
        one is always there whole (see :mod:`udtc.atomic`).
        """
        target = Path(path).expanduser()
        atomic.recover(target)
        if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
            raise FileExistsError(f"{target} exists and is not empty; pick another path or pass overwrite=True")
        with atomic.new_folder(target) as tmp:
            self.backend.save(tmp)
            self.config.save(tmp)
            if self.calibration is not None:
                self.calibration.save(tmp)
            (tmp / "README.md").write_text((card or self.model_card()).render(), encoding="utf-8")
        return target

    def model_card(self) -> ModelCard:
        return ModelCard(backend=self.backend.name, base_model=safety.portable_name(self.base_model), labels=self.labels,
                         calibration=self.calibration.summary() if self.calibration else {})

    def push_to_hub(self, repo_id: str, *, private: bool = True, token: str | None = None,
                    commit_message: str = "Upload udtc model", revision: str | None = None) -> str:
        """Save to a temporary folder and upload it to the Hub (private by default). Returns the repo URL."""
        from huggingface_hub import HfApi, get_token

        token = token or get_token()
        if not token:
            raise ValueError("no Hugging Face token: pass token=..., set HF_TOKEN, or run `hf auth login`")
        api = HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message, revision=revision,
                              allow_patterns=atomic.files_in(folder))
        return str(url)

    def __repr__(self) -> str:
        return f"Classifier(backend={self.backend.name!r}, base_model={self.base_model!r}, labels={self.labels!r})"


# ---------------------------------------------------------------------- helpers
def _load_backend(backend_cls: type[Backend], folder: Path, *, device, dtype, options: dict) -> Backend:
    from safetensors import SafetensorError

    from udtc.compat import quiet_loading

    if folder.is_dir() and not any(folder.glob("*.safetensors")) and not any(folder.glob("*.gguf")):
        pickled = sorted(p.name for pattern in ("*.bin", "*.pt", "*.pth", "*.ckpt") for p in folder.glob(pattern))
        if pickled:
            raise ValueError(f"{folder} has only pickle weights ({', '.join(pickled)}); udtc loads safetensors only, "
                             "because pickle can run code. Convert them once, e.g. with transformers: "
                             "AutoModel.from_pretrained(folder).save_pretrained(folder)")
    try:
        with quiet_loading():
            return backend_cls.load(folder, device=device, dtype=dtype, **options)
    except SafetensorError as err:
        raise ValueError(f"a safetensors file in {folder} is corrupted or truncated ({err}); re-download or re-save the model") from None
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"could not load the {backend_cls.name!r} model in {folder}: {err}") from None
    except Exception as err:  # noqa: BLE001 - a malformed tokenizer file raises json/tokenizers errors
        bad = safety.load_error(folder, err)
        if bad is None:
            raise
        raise bad from None


def _check_texts(texts: Any) -> list[str]:
    if isinstance(texts, (bytes, Mapping)):
        raise TypeError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}")
    try:
        text_list = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a string or a sequence of strings, got {type(texts).__name__}") from None
    if not text_list:
        raise ValueError("texts is empty; pass at least one text")
    for i, text in enumerate(text_list):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise ValueError(f"text {i} is empty or whitespace only; remove it or give it content")
        safety.check_encodable(text, f"text {i}")
    return text_list


def _one_label_set(spec: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """-> (names as given, what the model reads: stripped description or name)."""
    if isinstance(spec, str):
        raise TypeError(f"{where} must be a list of strings or a dict, got the string {spec!r}; did you mean [{spec!r}]?")
    if isinstance(spec, Mapping):
        pairs = list(spec.items())
    elif isinstance(spec, Sequence):
        pairs = [(name, name) for name in spec]
    else:
        raise TypeError(f"{where} must be a list of strings or a dict of name -> description, got {type(spec).__name__}")
    if not pairs:
        raise ValueError(f"{where} is empty; pass at least one label")
    seen: dict[str, str] = {}
    for name, description in pairs:
        if not isinstance(name, str) or not isinstance(description, str):
            bad = name if not isinstance(name, str) else description
            raise TypeError(f"{where}: every label and description must be a string, got {type(bad).__name__} {bad!r}")
        safety.check_encodable(name, f"{where}: label")
        safety.check_encodable(description, f"{where}: description of label {name!r}")
        key = name.strip()
        if not key or not description.strip():
            raise ValueError(f"{where}: label {name!r} is empty or whitespace only (or has an empty description)")
        if key in seen:
            raise ValueError(f"{where}: duplicate label {key!r} (labels are compared after stripping whitespace)")
        seen[key] = description.strip()
    return tuple(name for name, _ in pairs), tuple(seen.values())


def _label_sets(labels: Any, n_texts: int, single: bool) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    if labels is None:
        raise ValueError("no labels given and the model has none of its own; pass labels=[...]")
    per_text = (
        isinstance(labels, Sequence) and not isinstance(labels, str) and len(labels) > 0
        and all(isinstance(item, (Sequence, Mapping)) and not isinstance(item, str) for item in labels)
    )
    if not per_text:
        shared = _one_label_set(labels, "labels")
        return [shared] * n_texts
    if len(labels) != n_texts:
        raise ValueError(f"got {len(labels)} label sets for {n_texts} text(s); pass one label set per text, or one shared list")
    return [_one_label_set(spec, f"label set {i}") for i, spec in enumerate(labels)]


def _progress(total: int, progress: bool | None, batch_size: int):
    if progress is False or (progress is None and total <= batch_size):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="classify", unit="text")
