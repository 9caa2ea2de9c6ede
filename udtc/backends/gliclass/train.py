"""Building a new GLiClass model on a plain encoder (``GLiClassBackend.from_encoder``), the start of
fine-tuning a GLiClass classifier from a sentence encoder (Stepanov et al., 2025, arXiv 2508.07662).

The model's own training hooks (``trainable_module``, ``training_logits`` with label shuffling) are
in ``backend.py``; the loss (focal, Sec. 2.3) and sampled negatives are generic options of ``udtc.finetune``.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from udtc.backends._text import token_id
from udtc.backends.gliclass.config import NEW_MODEL_OPTIONS
from udtc.backends.gliclass.model import (ENCODER_TYPES, EXAMPLE_TOKEN, LABEL_TOKEN, SEP_TOKEN, GLiClassConfig,
                                          GLiClassUniEncoder, init_head_weights)
from udtc.config import read_json
from udtc.runtime import seeded
from udtc.safety import portable_name


def build_on_encoder(cls: Any, folder: Path, *, max_length: int | None = None, seed: int | None = None,
                     device: str | torch.device = "cpu", trust_remote_code: bool = False,
                     **gliclass_options: Any) -> Any:
    """``cls.from_encoder`` (see its docstring): a new, untrained GLiClass uni-encoder on ``folder``."""
    from transformers import AutoModel, AutoTokenizer

    unknown = sorted(set(gliclass_options) - set(NEW_MODEL_OPTIONS))
    if unknown:  # the options of a new model, not init_seed or max_length (parameters here)
        raise TypeError(f"from_encoder got unknown options {unknown}; it takes {sorted(NEW_MODEL_OPTIONS)}")
    modules = read_json(folder / "modules.json", [])
    transformer = next((m.get("path", "") for m in modules if m.get("type", "").endswith(".Transformer")), "")
    encoder_dir = folder / transformer
    model_type = read_json(encoder_dir / "config.json", {}).get("model_type")
    if model_type not in ENCODER_TYPES:
        raise ValueError(f"{folder} is neither a GLiClass checkpoint (config.json with model_type 'GLiClass') nor an "
                         f"encoder a new GLiClass model can be built on (found model_type={model_type!r}; "
                         f"supported: {', '.join(ENCODER_TYPES)})")
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir, trust_remote_code=trust_remote_code)
    tokenizer.add_tokens([LABEL_TOKEN, SEP_TOKEN, EXAMPLE_TOKEN], special_tokens=True)
    encoder = AutoModel.from_pretrained(encoder_dir, use_safetensors=True, dtype=torch.float32,
                                        trust_remote_code=trust_remote_code)
    defaults = {f.name: f.default for f in fields(GLiClassConfig) if f.name != "encoder_config"}
    raw = {**defaults, **gliclass_options, "model_type": "GLiClass", "architectures": ["GLiClassModel"],
           "encoder_config": encoder.config.to_dict(), "encoder_model_name": portable_name(str(encoder_dir)),
           "vocab_size": len(tokenizer), "hidden_size": gliclass_options.get("hidden_size", encoder.config.hidden_size),
           "class_token_index": token_id(tokenizer, LABEL_TOKEN), "text_token_index": token_id(tokenizer, SEP_TOKEN),
           "example_token_index": token_id(tokenizer, EXAMPLE_TOKEN), "pad_token_id": encoder.config.pad_token_id,
           "problem_type": "multi_label_classification"}
    config = GLiClassConfig.from_dict(raw)
    with seeded(seed):
        _add_token_embeddings(encoder, len(tokenizer))
        module = GLiClassUniEncoder(config, encoder)
        init_head_weights(module, config.initializer_range)
    backend = cls(module.to(device), tokenizer, raw, max_length=max_length)
    if seed is not None:
        backend.init_options = {"init_seed": seed, **gliclass_options}
    return backend


def _add_token_embeddings(encoder: torch.nn.Module, size: int) -> None:
    """Grow the input embeddings to ``size`` rows; new rows ~ N(mean, std) of the old rows, per dimension
    (global torch RNG: the caller seeds it)."""
    old = encoder.get_input_embeddings().weight.detach().clone()  # (V, H)
    if size <= old.shape[0]:
        return
    encoder.resize_token_embeddings(size, mean_resizing=False)
    new = old.mean(0) + old.std(0) * torch.randn(size - old.shape[0], old.shape[1])  # (size - V, H)
    with torch.no_grad():
        encoder.get_input_embeddings().weight[old.shape[0]:] = new.to(old.dtype)
