"""Running an exported network on ONNX Runtime (the load side of ``udtc export``; docs/export.md).

An export folder is a saved udtc folder plus one ``.onnx`` graph per network the backend runs in torch
(``Backend.onnx_modules``, e.g. the transformer encoder); ``udtc_config.json`` lists them under
``runtime``. Loading builds the backend as usual, then puts an :class:`OnnxModule` where each network
was: the backend's own tokenisation, truncation, batching, label cache and scoring code run unchanged,
only the forward pass runs on ONNX Runtime (CPU).

Safety: an ``.onnx`` file is a protobuf graph of standard operators (it runs no Python). udtc refuses a
graph that names external data files (weights kept outside it), resolves every file name inside the
folder (:func:`udtc.safety.inside`), and hands ONNX Runtime the bytes, never a path, so loading an
export never reads outside its folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from udtc.safety import inside

RUNTIME = "onnxruntime"
INSTALL = 'pip install "udtc[onnx]"'


@dataclass
class ExportedModule:
    """One exported network, as ``udtc_config.json`` records it under ``runtime.modules``."""

    module: str  # attribute path on the backend it replaces, one of ``Backend.onnx_modules``
    file: str  # the .onnx file, relative to the folder
    output: str | None = None  # the output's attribute name (e.g. "last_hidden_state"); None: a bare tensor


def runtime_config(modules: list[ExportedModule], quantize: str | None) -> dict[str, Any]:
    return {"name": RUNTIME, "quantize": quantize, "modules": [asdict(m) for m in modules]}


def import_onnxruntime() -> Any:
    try:
        import onnx  # noqa: F401 - the external-data check reads graphs with it
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"ONNX export and inference need onnxruntime and onnx ({err.name} is missing): "
                          f"{INSTALL}") from None
    return onnxruntime


class OnnxModule:
    """Stands in for the torch module a backend calls: same inputs (keyword tensors, or one NamedTuple of
    tensors), outputs as CPU torch tensors, computed by an ONNX Runtime session."""

    def __init__(self, session: Any, output: str | None, config: Any = None):
        self.session, self.output, self.config = session, output, config
        self.input_names = [i.name for i in session.get_inputs()]
        self._anchor = torch.empty(0)  # Backend.device reads the first parameter's device: the CPU

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args:  # one NamedTuple of tensors (e.g. GLiClass's Inputs)
            (inputs,) = args
            kwargs = inputs._asdict()
        feed = {name: kwargs[name].detach().cpu().numpy() for name in self.input_names}
        (out,) = self.session.run(None, feed)
        tensor = torch.from_numpy(out)
        return tensor if self.output is None else SimpleNamespace(**{self.output: tensor})

    def parameters(self):
        return iter([self._anchor])

    def eval(self) -> OnnxModule:
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("session", "output", "config", "input_names", "_anchor"):
            raise AttributeError(name)
        raise AttributeError(f"{name!r} is not available: this network runs on ONNX Runtime (a folder made by "
                             "udtc export); load the torch model it was exported from")


def attach(backend: Any, folder: Path, runtime: Any) -> Any:
    """``backend`` with each network listed in ``runtime`` (``udtc_config.json``) replaced by its ONNX graph."""
    ort = import_onnxruntime()
    if not isinstance(runtime, dict) or runtime.get("name") != RUNTIME or not isinstance(runtime.get("modules"), list):
        raise ValueError(f"{folder}: udtc_config.json has an unknown runtime {runtime!r}; this udtc runs "
                         f"{{'name': '{RUNTIME}', 'modules': [...]}} (made by udtc export)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # as torch would: OMP_NUM_THREADS, set_num_threads
    options.inter_op_num_threads = 1
    for entry in runtime["modules"]:
        try:
            spec = ExportedModule(**entry)
        except TypeError:
            raise ValueError(f"{folder}: a runtime module in udtc_config.json is malformed: {entry!r}") from None
        if spec.module not in backend.onnx_modules:
            raise ValueError(f"{folder}: runtime module {spec.module!r} is not one the {backend.name!r} backend runs on "
                             f"ONNX (it runs {list(backend.onnx_modules)})")
        if spec.output is not None and not (isinstance(spec.output, str) and spec.output.isidentifier()):
            raise ValueError(f"{folder}: runtime output {spec.output!r} is not a name")
        data = read_graph(inside(folder, spec.file, "an ONNX file named in udtc_config.json"))
        parent, attr = _parent(backend, spec.module)
        torch_module = getattr(parent, attr)
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        setattr(parent, attr, OnnxModule(session, spec.output, getattr(torch_module, "config", None)))
    return backend


def read_graph(path: Path) -> bytes:
    """The bytes of the ONNX graph at ``path``, refused when it keeps tensors in external files."""
    import onnx

    if not path.is_file():
        raise FileNotFoundError(f"missing {path} (an ONNX graph udtc_config.json names); export the model again")
    data = path.read_bytes()
    try:
        graph = onnx.load_model_from_string(data)  # from bytes: never reads an external data file
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ValueError(f"{path} is not a readable ONNX graph ({err}); export the model again") from None
    if _has_external_data(graph):
        raise ValueError(f"{path} keeps tensors in external data files; udtc loads self-contained ONNX graphs only "
                         "(a model folder never makes udtc read outside a file it names)")
    return data


def _has_external_data(message: Any) -> bool:
    """Whether any tensor anywhere in an ONNX message points at an external file: initializers, sparse
    initializers (onnx's own tensor walk skips them), attributes, subgraphs of If/Loop, ..."""
    from onnx import TensorProto

    if isinstance(message, TensorProto):
        return message.data_location == TensorProto.EXTERNAL or len(message.external_data) > 0
    for field, value in message.ListFields():
        if field.type == field.TYPE_MESSAGE:
            repeated = getattr(field, "is_repeated", None)  # protobuf >= 6; before it, the label
            items = value if (repeated if repeated is not None else field.label == field.LABEL_REPEATED) else [value]
            if any(_has_external_data(item) for item in items):
                return True
    return False


def exported(backend: Any) -> bool:
    """True when some network of ``backend`` runs on ONNX Runtime."""
    return any(isinstance(getattr(*_parent(backend, path)), OnnxModule) for path in backend.onnx_modules)


def refuse_exported(backend: Any, what: str) -> None:
    if exported(backend):
        raise ValueError(f"{what} needs the torch model, and this classifier runs an ONNX export (udtc export): "
                         "load the folder it was exported from, and export again afterwards")


def _parent(obj: Any, path: str) -> tuple[Any, str]:
    *parents, attr = path.split(".")
    for name in parents:
        obj = getattr(obj, name)
    return obj, attr
