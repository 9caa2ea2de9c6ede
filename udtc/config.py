"""``udtc_config.json``: which backend a folder is for, with what options and labels."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from udtc._version import __version__

CONFIG_NAME = "udtc_config.json"
#: a LoRA adapter saved by ``udtc.finetune`` (peft's file names)
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


@dataclass
class UdtcConfig:
    """The udtc part of a saved folder; everything the backend itself needs is in ``options``."""

    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    labels: list[str] | None = None  # fixed labels of a fine-tuned model, else None
    base_model: str | None = None  # where the weights came from, for model cards
    udtc_version: str = __version__
    runtime: dict[str, Any] | None = None  # an export's networks on ONNX Runtime (udtc/onnx_runtime.py); None: torch

    def save(self, folder: Path) -> None:
        data = {k: v for k, v in asdict(self).items() if k != "runtime" or v is not None}
        (folder / CONFIG_NAME).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> UdtcConfig:
        path = folder / CONFIG_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); fix or delete it") from None
        if not isinstance(data, dict) or "backend" not in data:
            raise ValueError(f"{path} must be a JSON object with a 'backend' key")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path} has unknown keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


def read_json(path: Path, default: Any = ...) -> Any:
    """The JSON in ``path``; ``default`` when it is missing (else FileNotFoundError); invalid JSON is a ValueError."""
    if not path.exists():
        if default is ...:
            raise FileNotFoundError(f"missing {path}")
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
