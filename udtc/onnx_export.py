"""``udtc.export`` and ``udtc export``: a model folder whose networks run on ONNX Runtime (docs/export.md).

The export is the model saved as ``save_pretrained`` saves it (config, tokenizer, safetensors) plus one
ONNX graph per network the backend runs in torch (``Backend.onnx_modules``: the transformer encoder
of cosine and of SCE's embedder, the NLI sequence-classification model, the GLiClass uni-encoder), and
``udtc_config.json`` names them under ``runtime``. ``Classifier.from_pretrained(folder)`` then runs the
backend's own code around ONNX Runtime (udtc/onnx_runtime.py), so tokenisation, truncation, batching,
label-set invariance and the label cache stay those of the torch model.

How: one short ``classify`` call records the inputs each network receives (texts and labels of
different lengths, so the batch is padded), and torch's TorchScript exporter (``dynamo=False``: the
dynamo exporter needs onnxscript) traces the network on them with every axis dynamic; the fp32 graph
must then reproduce torch's output on them. ``quantize="int8"`` is ONNX Runtime's dynamic quantization
(int8 weights with one scale per output channel, activations quantized per call); ``"fp16"`` converts the graph's weights and arithmetic
to float16 with float32 inputs and outputs (``onnxruntime.transformers.float16``).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FORMATS = ("onnx",)
QUANTIZE = ("int8", "fp16")
_OPSET = 17
#: the largest difference of the fp32 graph from torch on the recorded inputs before the export is refused
_TOLERANCE = 1e-3


def export(model: Any, out: str | os.PathLike, *, format: str = "onnx", quantize: str | None = None,
           overwrite: bool = False) -> Path:
    """Export a classifier (or the model folder / name it loads from) to a folder that runs on ONNX Runtime.

    Args:
        model: a :class:`~udtc.Classifier`, or a folder, package or Hub name ``Classifier.from_pretrained`` takes.
        out: the folder to write; ``Classifier.from_pretrained(out)`` loads it.
        format: ``"onnx"``.
        quantize: None (float32), ``"int8"`` (dynamic quantization: smaller and faster on CPUs) or ``"fp16"``.
        overwrite: replace a non-empty ``out``.

    Returns:
        The folder written.
    """
    import torch

    from udtc import atomic
    from udtc.backends import available_backends, get_backend
    from udtc.classifier import Classifier
    from udtc.config import UdtcConfig
    from udtc.onnx_runtime import ExportedModule, import_onnxruntime, refuse_exported, runtime_config

    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; use one of {list(FORMATS)}")
    if quantize not in (None, *QUANTIZE):
        raise ValueError(f"unknown quantize={quantize!r}; use one of {list(QUANTIZE)} or None (float32)")
    import_onnxruntime()
    clf = model if isinstance(model, Classifier) else Classifier.from_pretrained(model, device="cpu")
    backend = clf.backend
    if not backend.onnx_modules:
        names = [n for n in available_backends() if get_backend(n).onnx_modules]
        raise ValueError(f"the {backend.name!r} backend cannot be exported to ONNX; these can: {', '.join(names)}")
    refuse_exported(backend, "export")
    params = [p for path in backend.onnx_modules for p in _get(backend, path).parameters()]
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
        raise ValueError("export starts from float32 weights on the CPU: load the model with device='cpu' and no dtype "
                         "(quantize= picks the export's precision)")
    if not str(out).strip():
        raise ValueError("the export folder is empty (''); name a folder to write the export to")
    target = Path(out).expanduser()
    source = Path(clf.source).resolve() if clf.source is not None and Path(clf.source).exists() else None
    if source is not None and (target.resolve() == source or target.resolve().is_relative_to(source)
                               or source.is_relative_to(target.resolve())):
        raise ValueError(f"{target} holds the model being exported ({clf.source}); export to another folder, so the "
                         "model stays as it is")
    atomic.recover(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise FileExistsError(f"{target} exists and is not empty; pick another path or pass overwrite=True")
    calls = _record(clf)
    with atomic.new_folder(target) as tmp:
        clf.save_pretrained(tmp, overwrite=True)
        modules = []
        for path in backend.onnx_modules:
            file = path.replace(".", "_") + ".onnx"  # model.onnx, embedder_model.onnx
            with torch.inference_mode(False), torch.no_grad():
                output = _export_graph(*calls[path], tmp / file, quantize)
            modules.append(ExportedModule(module=path, file=file, output=output))
        config = UdtcConfig.load(tmp)
        config.runtime = runtime_config(modules, quantize)
        config.save(tmp)
        precision = {None: "float32", "int8": "int8 weights (dynamic quantization)", "fp16": "float16"}[quantize]
        with (tmp / "README.md").open("a", encoding="utf-8") as card:
            card.write(f"\n## Runtime\n\nExported with `udtc export` ({precision}): "
                       f"{', '.join(m.file for m in modules)} run on ONNX Runtime (`pip install \"udtc[onnx]\"`); "
                       "the rest of the folder is the torch model it was exported from.\n")
    return target


# ---------------------------------------------------------------------------------------------- recording
class _Recorder:
    """Calls through to ``module`` and keeps the first call's arguments and output."""

    def __init__(self, module: Any):
        self.module = module
        self.call: tuple[tuple, dict, Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.module(*args, **kwargs)
        if self.call is None:
            self.call = (args, kwargs, out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["module"], name)


def _record(clf: Any) -> dict[str, tuple[Any, tuple, dict, Any]]:
    """Per exported network: (module, args, kwargs, output) of a call with padded inputs."""
    backend, recorders = clf.backend, {}
    for path in backend.onnx_modules:
        recorders[path] = _Recorder(_get(backend, path))
        _set(backend, path, recorders[path])
    try:  # texts and labels of different lengths: every batch is padded, so the trace keeps the mask's work
        clf.uncalibrated().classify(["an example text that is clearly longer than the other one", "short text"],
                                    ["first label name", "second"], batch_size=2, progress=False)
    finally:
        for path, recorder in recorders.items():
            _set(backend, path, recorder.module)
    if hasattr(backend, "clear_cache"):
        backend.clear_cache()
    calls = {}
    for path, recorder in recorders.items():
        if recorder.call is None:
            raise RuntimeError(f"the {backend.name!r} backend never called {path} while classifying; cannot export it")
        calls[path] = (recorder.module, *recorder.call)
    return calls


# ---------------------------------------------------------------------------------------------- exporting
def _export_graph(module: Any, args: tuple, kwargs: dict, output: Any, path: Path, quantize: str | None) -> str | None:
    """Write ``module`` as an ONNX graph taking the recorded inputs; returns the output's attribute name."""
    import numpy as np
    import torch

    if args:
        if len(args) != 1 or kwargs or not hasattr(args[0], "_fields"):
            raise ValueError(f"not supported yet: exporting {type(module).__name__} called with {len(args)} positional "
                             "arguments (a network takes keyword tensors or one NamedTuple of tensors)")
        tuple_type, values = type(args[0]), args[0]._asdict()
    else:
        tuple_type, values = None, kwargs
    if not all(isinstance(v, torch.Tensor) for v in values.values()):
        raise ValueError(f"not supported yet: exporting {type(module).__name__} called with non-tensor arguments")
    names = list(values)
    tensors = tuple(values[n].clone() for n in names)  # plain tensors (the recorded ones are inference tensors)
    name = None if isinstance(output, torch.Tensor) else next(iter(output.keys()))
    expected = output if name is None else output[name]

    class Flat(torch.nn.Module):
        """The network with positional tensor inputs and one tensor output, as the exporter traces it."""

        def __init__(self):
            super().__init__()
            self.module = module

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            given = dict(zip(names, inputs))
            out = self.module(tuple_type(**given)) if tuple_type else self.module(**given)
            return out if name is None else out[name]

    flat = Flat().eval()
    axes = {n: {i: f"{n}_{i}" for i in range(t.dim())} for n, t in zip(names, tensors)}
    axes["output"] = {i: f"output_{i}" for i in range(expected.dim())}
    fp32 = path.with_suffix(".fp32.onnx") if quantize else path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings on shape arithmetic, the exporter's deprecation notice
        torch.onnx.export(flat, tensors, str(fp32), dynamo=False, input_names=names, output_names=["output"],
                          dynamic_axes=axes, opset_version=_OPSET, do_constant_folding=True)
    module.eval()  # the exporter restores the training flag of ``flat`` on everything inside it
    from udtc.onnx_runtime import import_onnxruntime, read_graph

    ort = import_onnxruntime()
    session = ort.InferenceSession(read_graph(fp32), providers=["CPUExecutionProvider"])
    feed = {i.name: values[i.name].numpy() for i in session.get_inputs()}
    got = session.run(None, feed)[0]
    gap = float(np.abs(got - expected.float().numpy()).max())
    if gap > _TOLERANCE * max(1.0, float(expected.abs().max())):
        fp32.unlink()
        raise RuntimeError(f"the ONNX graph of {type(module).__name__} differs from torch by {gap:.2g} on the example "
                           "inputs; this model cannot be exported faithfully yet")
    if quantize:
        _quantize(fp32, path, quantize)
        fp32.unlink()
    return name


def _quantize(source: Path, target: Path, quantize: str) -> None:
    import onnx

    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # one scale per output channel (weight row): fewer top labels move than with one scale per tensor
        with _quiet_quantizer():
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)
    else:
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(target))


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer gives advice ("Please consider to run pre-processing before quantization") through
    the root logger (``logging.warning``), which prints it and, when the root logger has no handler, configures one
    for the rest of the process (``logging.basicConfig``). Drop its records below ERROR and leave the root logger as
    it was."""
    import logging

    import onnxruntime.quantization

    package = str(Path(onnxruntime.quantization.__file__).parent)
    root = logging.getLogger()
    stand_in = logging.NullHandler() if not root.handlers else None  # a handler: logging.warning() skips basicConfig

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.pathname.startswith(package)

    if stand_in:
        root.addHandler(stand_in)
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)
        if stand_in:
            root.removeHandler(stand_in)


def _get(obj: Any, path: str) -> Any:
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def _set(obj: Any, path: str, value: Any) -> None:
    *parents, attr = path.split(".")
    setattr(_get(obj, ".".join(parents)) if parents else obj, attr, value)


# ---------------------------------------------------------------------------------------------- CLI
def add_export_command(sub) -> None:
    """Register ``export`` on the ``udtc`` CLI's subparsers (imports nothing heavy)."""
    e = sub.add_parser("export", help="export a model to ONNX for fast CPU inference (ONNX Runtime)",
                       description="Write MODEL to the folder OUT with its networks as ONNX graphs; "
                                   "Classifier.from_pretrained(OUT) and --model OUT run them on ONNX Runtime. "
                                   'Needs pip install "udtc[onnx]". See docs/export.md.')
    e.add_argument("model", help="folder, package or Hub id of the model to export (e.g. a fine-tuned folder)")
    e.add_argument("out", type=Path, help="folder to write")
    e.add_argument("--format", default="onnx", choices=FORMATS)
    e.add_argument("--quantize", default=None, choices=QUANTIZE,
                   help="int8: dynamic quantization (smaller, faster on CPU); fp16: float16 weights (default: float32)")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT folder")
    e.set_defaults(func=run_export)


def run_export(args) -> int:
    folder = export(args.model, args.out, format=args.format, quantize=args.quantize, overwrite=args.overwrite)
    print(f"exported to {folder}", file=sys.stderr)
    return 0
