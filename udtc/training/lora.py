"""LoRA and QLoRA through peft (Hu et al., 2022, arXiv 2106.09685; Dettmers et al., 2023, arXiv 2305.14314).

peft injects the adapter into the backend's :meth:`~udtc.Backend.trainable_module` in place;
udtc saves it the peft way (``adapter_config.json`` + ``adapter_model.safetensors``, no base
weights) next to a ``udtc_config.json`` whose ``base_model`` names the weights it adapts. Loading
such a folder loads the base and merges the adapter into it, so the result scores like any model.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from udtc.backends.base import Backend

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

LORA_CITATION = """@inproceedings{hu2022lora,
  title = {{LoRA}: Low-Rank Adaptation of Large Language Models},
  author = {Hu, Edward J. and Shen, Yelong and Wallis, Phillip and Allen-Zhu, Zeyuan and Li, Yuanzhi and Wang, Shean and Wang, Lu and Chen, Weizhu},
  booktitle = {International Conference on Learning Representations},
  year = {2022},
}"""
QLORA_CITATION = """@inproceedings{dettmers2023qlora,
  title = {{QLoRA}: Efficient Finetuning of Quantized {LLMs}},
  author = {Dettmers, Tim and Pagnoni, Artidoro and Holtzman, Ari and Zettlemoyer, Luke},
  booktitle = {Advances in Neural Information Processing Systems},
  year = {2023},
}"""


def add_lora(backend: Backend, *, r: int, alpha: float, dropout: float,
             target_modules: list[str] | tuple[str, ...] | str | None, quantized: bool = False) -> Any:
    """Wrap ``backend.trainable_module()`` with a fresh LoRA adapter; returns the ``PeftModel``."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    module = backend.trainable_module()
    if quantized:
        module = prepare_model_for_kbit_training(module, use_gradient_checkpointing=False)
    targets = list(target_modules) if isinstance(target_modules, tuple) else target_modules
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                        modules_to_save=list(backend.head_modules) or None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers deprecations peft triggers
            return get_peft_model(module, config)
    except ValueError as err:
        raise ValueError(f"LoRA cannot wrap the {backend.name!r} model: {str(err).splitlines()[0]}; "
                         "pass lora_target_modules=[...] naming its linear layers") from None


def enable_gradient_checkpointing(module: torch.nn.Module) -> list[str]:
    """Turn on gradient checkpointing (non-reentrant) in every outermost transformers model inside
    ``module``; returns their names. Raises when there is none that supports it."""
    from udtc.compat import enable_checkpointing

    found: list[str] = []
    for name, sub in module.named_modules():
        if any(name.startswith(f"{outer}.") for outer in found if outer) or "" in found:
            continue
        if getattr(sub, "supports_gradient_checkpointing", False) and hasattr(sub, "gradient_checkpointing_enable"):
            enable_checkpointing(sub)
            found.append(name)
    if not found:
        raise ValueError(f"gradient_checkpointing: no transformers model inside {type(module).__name__} supports it")
    return found


def merge_lora(peft_model: Any, backend: Backend) -> None:
    """Fold the adapter into the base weights, in place; the backend keeps scoring with the same module."""
    merged = peft_model.merge_and_unload()
    assert merged is backend.trainable_module(), "peft replaced the module instead of merging in place"
    backend.clear_cache()


def load_with_adapter(folder: Path, config: Any, *, device: torch.device, dtype: torch.dtype | None,
                      options: dict[str, Any], token: str | None = None) -> Backend:
    """The backend of ``config.base_model`` with the LoRA adapter in ``folder`` merged in."""
    from peft import PeftModel

    from udtc.classifier import Classifier
    from udtc.safety import named_model

    if config is None or not config.base_model:
        raise ValueError(f"{folder} holds a LoRA adapter but no udtc_config.json naming its base_model")
    if not (folder / ADAPTER_WEIGHTS).exists():
        raise ValueError(f"{folder} has {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS}; udtc loads safetensors only (no pickle)")
    try:
        base_ref = named_model(folder, config.base_model, "base_model",
                               trust_remote_code=bool(options.get("trust_remote_code", False)), token=token)
        base = Classifier.from_pretrained(base_ref, backend=config.backend, device=device, dtype=dtype,
                                          token=token, **options)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"the LoRA adapter in {folder} needs its base model {config.base_model!r}, "
                                f"which cannot be found: {err}") from None
    backend = base.backend
    backend.prepare_adapter(folder)  # e.g. a head of the saved shape, which the adapter's modules_to_save fill
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = PeftModel.from_pretrained(backend.trainable_module(), folder)
    merge_lora(peft_model, backend)
    return backend
