"""Checkpoints and the output-folder rule. Tensors go to safetensors, everything else to JSON: no pickle.

Layout of ``output_dir`` while a run is in progress::

    checkpoints/run.json          the run's settings (written first; decides whether a rerun resumes)
    checkpoints/latest.json       {"epoch": k, "dir": "epoch-000k"}, replaced atomically after each epoch
    checkpoints/epoch-000k/       trainable.safetensors   the trained parameters (adapter or full module)
                                  optimizer.safetensors   AdamW moments and step counts
                                  rng.safetensors         torch RNG states, one per process (+ CUDA)
                                  state.json              epoch, history, best epoch, scheduler, scaler,
                                                          optimizer hyperparameters, Python/numpy RNG

Only the latest epoch and the best one are kept. An epoch folder is written under a temporary name
and renamed when complete, and ``latest.json`` moves only after that, so a run killed at any
moment (kill -9 included) resumes from the last complete epoch. When the run finishes, the final
model is written beside ``output_dir`` and swapped in whole, which removes ``checkpoints/`` with the
old folder, so a kill during that cleanup never leaves a half-removed ``checkpoints/``.

The rule for ``output_dir``:

1. missing or empty: a new run starts;
2. holds ``checkpoints/run.json`` with the same settings: the run resumes where it stopped;
3. anything else (a finished model, other files, a run with other settings): refused with an error
   that says what is there, unless ``overwrite=True``, which starts over; what the folder held stays
   until the new model is complete and replaces the whole folder in one swap (``udtc.atomic``).

See :func:`inspect_output_dir` (every process reads) and :func:`claim_output_dir` (the main one writes).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

RUN_FILE = "run.json"
LATEST_FILE = "latest.json"
REPLACED_FILE = "replaced.json"
CHECKPOINTS = "checkpoints"


def inspect_output_dir(output_dir: Path, settings: dict[str, Any], *, overwrite: bool) -> bool:
    """Apply the output-folder rule without writing; True when a run in progress should be resumed."""
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"output_dir {output_dir} is a file; pass a folder")
    entries = sorted(p.name for p in output_dir.iterdir()) if output_dir.exists() else []
    run_file = output_dir / CHECKPOINTS / RUN_FILE
    if entries == [CHECKPOINTS] and not any(p.name != REPLACED_FILE for p in (output_dir / CHECKPOINTS).iterdir()):
        entries = []  # killed before run.json was written
    if not entries or overwrite:
        return False
    if not run_file.exists():
        what = "a finished udtc model" if "udtc_config.json" in entries else f"files: {', '.join(entries[:8])}"
        raise FileExistsError(f"output_dir {output_dir} is not empty ({what}); pick another folder or pass "
                              "overwrite=True to replace it")
    saved, settings = _read_json(run_file), _as_json(settings)
    changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
    if changed:
        diff = "; ".join(f"{k}: {saved.get(k)!r} -> {settings.get(k)!r}" for k in changed[:6])
        raise FileExistsError(f"output_dir {output_dir} holds an unfinished run with other settings ({diff}); "
                              "rerun with the same settings to resume it, or pass overwrite=True to start over")
    return True


def claim_output_dir(output_dir: Path, settings: dict[str, Any], *, resume: bool, overwrite: bool) -> None:
    """Record a new run's settings (main process only). Overwriting drops only an earlier run's
    checkpoints: an earlier model in the folder stays until the new one replaces it whole."""
    if overwrite and not resume:
        remove(output_dir)
    (output_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    if not resume:
        previous = sorted(p.name for p in output_dir.iterdir() if p.name != CHECKPOINTS) if overwrite else []
        _write_json(output_dir / CHECKPOINTS / REPLACED_FILE, previous)
        _write_json(output_dir / CHECKPOINTS / RUN_FILE, _as_json(settings))


def forget_untrained_run(output_dir: Path, *, remove_folder: bool) -> None:
    """A run that failed before its first checkpoint leaves nothing behind (a retry may use other settings)."""
    if not output_dir.is_dir() or (output_dir / CHECKPOINTS / LATEST_FILE).exists():
        return
    shutil.rmtree(output_dir / CHECKPOINTS, ignore_errors=True)
    if remove_folder and not any(output_dir.iterdir()):
        output_dir.rmdir()


def replaced(output_dir: Path) -> list[str]:
    """Names in ``output_dir`` that the run replaces when it finishes (what was there at ``overwrite=True``)."""
    path = output_dir / CHECKPOINTS / REPLACED_FILE
    return _read_json(path) if path.exists() else []


def latest(output_dir: Path) -> Path | None:
    """The folder of the last complete epoch, or None before the first one."""
    pointer = output_dir / CHECKPOINTS / LATEST_FILE
    if not pointer.exists():
        done = sorted(p.name for p in (output_dir / CHECKPOINTS).glob("epoch-*") if not p.name.endswith(".tmp"))
        if done:  # never silently retrain from epoch 0 over checkpoints that exist
            raise ValueError(f"{output_dir / CHECKPOINTS} holds {', '.join(done)} but no {LATEST_FILE}; the run was "
                             "interrupted while its checkpoints were being changed: pass overwrite=True to start over")
        return None
    folder = output_dir / CHECKPOINTS / _read_json(pointer)["dir"]
    if not (folder / "state.json").exists():
        raise ValueError(f"checkpoint {folder} named by {pointer} is missing or incomplete; "
                         "pass overwrite=True to start over")
    return folder


def save(output_dir: Path, epoch: int, files: dict[str, dict[str, torch.Tensor]], state: dict[str, Any],
         keep: set[int]) -> Path:
    """Write epoch ``epoch`` (safetensors ``files`` + ``state.json``) atomically; prune other epochs."""
    from safetensors.torch import save_file

    root = output_dir / CHECKPOINTS
    name = f"epoch-{epoch:04d}"
    tmp = root / f"{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file, tensors in files.items():
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / f"{file}.safetensors")
    _write_json(tmp / "state.json", state)
    shutil.rmtree(root / name, ignore_errors=True)
    tmp.rename(root / name)
    _write_json(root / LATEST_FILE, {"epoch": epoch, "dir": name})
    wanted = {f"epoch-{e:04d}" for e in keep | {epoch}}
    for old in root.glob("epoch-*"):
        if old.name not in wanted:
            shutil.rmtree(old, ignore_errors=True)
    return root / name


def epoch_dir(output_dir: Path, epoch: int) -> Path:
    return output_dir / CHECKPOINTS / f"epoch-{epoch:04d}"


def load_tensors(folder: Path, file: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / f"{file}.safetensors")


def read_state(folder: Path) -> dict[str, Any]:
    return _read_json(folder / "state.json")


def remove(output_dir: Path) -> None:
    """Drop the checkpoints once the final model is in place: ``run.json`` first, so a kill during the
    cleanup leaves a folder that a rerun refuses (a finished model) instead of one it resumes from
    nothing, i.e. retrains from epoch 0."""
    root = output_dir / CHECKPOINTS
    for name in (RUN_FILE, LATEST_FILE):
        if (root / name).exists():
            (root / name).unlink()
        if name == RUN_FILE:
            from udtc.atomic import fault

            fault("checkpoints:run-removed")
    shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- state
def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def load_trainable(module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    params = dict(module.named_parameters())
    missing = sorted(set(trainable_state(module)) - set(tensors))
    unknown = sorted(set(tensors) - set(params))
    if missing or unknown:
        raise ValueError(f"checkpoint does not match the model: missing {missing[:5]}, unexpected {unknown[:5]}")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors keyed ``"<param index>.<name>"``, JSON part: non-tensor state and param groups)."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in [*tensors.items(), *meta["scalars"].items()]:
        index, _, name = key.partition(".")
        state.setdefault(int(index), {})[name] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def rng_state() -> dict[str, torch.Tensor]:
    """This process's torch RNG states (CPU, and every CUDA device)."""
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        out.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return out


def set_rng_state(tensors: dict[str, torch.Tensor], rank: int) -> None:
    torch.set_rng_state(tensors[f"cpu.rank{rank}"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda") and k.endswith(f".rank{rank}"))]
        if states:
            torch.cuda.set_rng_state_all(states)


def host_rng_state() -> dict[str, Any]:
    """Python's and numpy's global RNG states, as JSON."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [kind, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)]}


def set_host_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _as_json(data: Any) -> Any:
    return json.loads(json.dumps(data, default=str))  # as it reads back from JSON (tuples become lists)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {path} ({err}); pass overwrite=True to start over") from None


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
