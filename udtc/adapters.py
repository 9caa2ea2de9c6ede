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
        apply_delta(backend.trainable_module(), folder)
        backend.clear_cache()
        return backend
    if merge_plain_lora(backend.trainable_module(), folder):  # the common case, without peft
        backend.clear_cache()
        return backend
    try:
        from peft import PeftModel
    except ImportError:
        raise ImportError(f"{folder} holds a LoRA adapter that needs peft to load (its config uses more than plain "
                          "LoRA on linear layers); install it with: pip install 'udtc[train]'") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = PeftModel.from_pretrained(backend.trainable_module(), folder)
    merged = peft_model.merge_and_unload()  # in place: the backend keeps scoring with the same module
    assert merged is backend.trainable_module(), "peft replaced the module instead of merging in place"
    backend.clear_cache()
    return backend


def apply_delta(module: torch.nn.Module, folder: Path) -> int:
    """Add the differences in ``folder/sparse_delta.safetensors`` to ``module``'s weights; returns the entries changed."""
    from safetensors.torch import load_file

    tensors = load_file(folder / SPARSE_DELTA)
    params = dict(module.named_parameters())
    names = sorted({key.rsplit("::", 1)[0] for key in tensors})
    unknown = [n for n in names if n not in params or f"{n}::indices" not in tensors or f"{n}::values" not in tensors]
    if unknown:
        raise ValueError(f"{folder / SPARSE_DELTA} does not match the base model: parameters {unknown[:3]} are not in it")
    changed = 0
    with torch.no_grad():
        for name in names:
            idx, values = tensors[f"{name}::indices"], tensors[f"{name}::values"]
            p = params[name]
            if idx.numel() != values.numel() or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= p.numel())):
                raise ValueError(f"{folder / SPARSE_DELTA}: the indices of {name} do not fit its shape {tuple(p.shape)}")
            flat = p.data.view(-1)
            flat[idx.to(p.device)] += values.to(p.device, p.dtype)
            changed += idx.numel()
    return changed


#: adapter_config.json entries that plain LoRA leaves empty; any other value needs peft to load
_NOT_PLAIN = ("modules_to_save", "rank_pattern", "alpha_pattern", "layer_replication", "use_dora", "use_rslora",
              "fan_in_fan_out", "lora_bias", "trainable_token_indices", "target_parameters", "loftq_config", "use_qalora",
              "alora_invocation_tokens")


def plain_lora_factors(folder: Path) -> tuple[float, dict[str, dict[str, torch.Tensor]]] | None:
    """A plain LoRA adapter's scaling (lora_alpha / r) and its factors by module name, ``{"A": (r, in), "B": (out,
    r)}``; None for an adapter that is not plain LoRA (extra saved modules, DoRA, per-module ranks, ...)."""
    from safetensors.torch import load_file

    from udtc.config import read_json

    config = read_json(folder / ADAPTER_CONFIG)
    if config.get("peft_type") != "LORA" or config.get("bias", "none") != "none" or any(config.get(k) for k in _NOT_PLAIN):
        return None
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in load_file(folder / ADAPTER_WEIGHTS).items():
        name, dot, part = key.removeprefix("base_model.model.").rpartition(".lora_")
        if not dot or part not in ("A.weight", "B.weight"):
            return None
        pairs.setdefault(name, {})[part[0]] = value
    if any(len(p) != 2 for p in pairs.values()):
        return None
    return float(config["lora_alpha"]) / int(config["r"]), pairs


def merge_plain_lora(module: torch.nn.Module, folder: Path) -> bool:
    """Fold a plain LoRA adapter into ``module``'s linear layers: W += (lora_alpha / r) B A (Hu et al., 2022,
    arXiv:2106.09685, Eq. (3)), as peft's ``merge_and_unload`` does; no peft needed, so a shipped adapter loads
    with the runtime dependencies only. Returns False (nothing changed) for an adapter that is not plain LoRA
    (``plain_lora_factors``), which peft then loads."""
    factors = plain_lora_factors(folder)
    if factors is None:
        return False
    scaling, pairs = factors
    try:
        found = {name: module.get_submodule(name) for name in pairs}
    except AttributeError:
        raise ValueError(f"{folder / ADAPTER_WEIGHTS} does not match the base model: it adapts modules it lacks") from None
    layers = {name: m for name, m in found.items() if type(m) is torch.nn.Linear}
    if len(layers) != len(found):
        return False
    with torch.no_grad():
        for name, layer in layers.items():
            a, b = pairs[name]["A"], pairs[name]["B"]  # (r, in), (out, r)
            if a.shape[1] != layer.in_features or b.shape[0] != layer.out_features or a.shape[0] != b.shape[1]:
                raise ValueError(f"{folder / ADAPTER_WEIGHTS}: the adapter of {name} does not fit its layer "
                                 f"({tuple(layer.weight.shape)})")
            delta = scaling * (b.float() @ a.float())  # (out, in)
            weight = layer.weight
            weight += delta.to(weight.device, weight.dtype)
    return True
