"""Loading what ``udtc.finetune`` saves as a change to a base model: a LoRA adapter (peft) or a sparse
change (``udtc/training/sparse.py``). The base named by ``udtc_config.json`` is loaded first (resolved
inside the folder or as a portable name, never an outside path), then the change is applied in place,
so the result scores like any model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from udtc.backends import Backend
from udtc.backends.base import Trainable
from udtc.config import ADAPTER_CONFIG, ADAPTER_WEIGHTS, UdtcConfig
from udtc.hub import named_model

if TYPE_CHECKING:
    from udtc.classifier import Classifier

#: the file of a sparse change (kept here so loading never imports the training code)
SPARSE_DELTA = "sparse_delta.safetensors"


def on_base(cls: type[Classifier], folder: Path, config: UdtcConfig | None, *, device: torch.device,
            dtype: torch.dtype | None, options: dict[str, Any], token: str | None) -> Backend:
    """The backend of ``config.base_model`` with the change in ``folder`` (LoRA adapter or sparse change) applied."""
    lora = (folder / ADAPTER_CONFIG).exists()
    what = "a LoRA adapter" if lora else "a sparse change"
    if config is None or not config.base_model:
        raise ValueError(f"{folder} holds {what} but no udtc_config.json naming its base_model")
    if lora and not (folder / ADAPTER_WEIGHTS).exists():
        raise ValueError(f"{folder} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}; udtc loads safetensors only (no pickle)")
    try:
        base_ref = named_model(folder, config.base_model, "base_model", token=token,
                               trust_remote_code=bool(options.get("trust_remote_code", False)))
        base = cls.from_pretrained(base_ref, backend=config.backend, device=device, dtype=dtype, token=token, **options)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"the {what.removeprefix('a ')} in {folder} needs its base model {config.base_model!r}, "
                                f"which cannot be found: {err}") from None
    backend = base.backend
    if not isinstance(backend, Trainable):
        raise ValueError(f"{folder} holds {what}, but the {backend.name!r} backend cannot be fine-tuned")
    backend.prepare_adapter(folder)  # e.g. a head of the saved shape, which the adapter's modules_to_save fill
    if not lora:
        from udtc.training.sparse import apply_delta

        apply_delta(backend.trainable_module(), folder)
        backend.clear_cache()
        return backend
    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = PeftModel.from_pretrained(backend.trainable_module(), folder)
    merged = peft_model.merge_and_unload()  # in place: the backend keeps scoring with the same module
    assert merged is backend.trainable_module(), "peft replaced the module instead of merging in place"
    backend.clear_cache()
    return backend
