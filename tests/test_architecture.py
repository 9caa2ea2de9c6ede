"""The shape of the package: no import cycle, small modules, a training loop that names no backend."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import udtc

ROOT = Path(udtc.__file__).parent
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """udtc modules ``path`` imports anywhere (module level or inside functions; not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # ``from a import b``: the module a.b when it is one, else a
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != here}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: _imports(path, set(files)) for name, path in files.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_import_graph_has_no_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_sees_cycles_and_function_level_imports():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
    graph = _graph()
    assert "udtc.training" in graph["udtc"]  # ``udtc.finetune`` imports it inside a function
    assert "udtc.io" in graph["udtc.training.data"] and "udtc.cli" not in graph["udtc.training.data"]
    assert "udtc.classifier" not in graph["udtc.training.lora"]


def test_no_module_is_over_the_line_limit():
    long = {str(p.relative_to(ROOT.parent)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them): {long}"


def test_training_names_no_backend():
    """The training code gets every backend special case through the Trainable hooks."""
    class_name = re.compile(r"(NLI|SCE|GLiClass|Llm|Cosine)\w*Backend|(^|_)nli(_|$)", re.IGNORECASE)
    for path in (ROOT / "training").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("udtc.backends."):
                assert node.module == "udtc.backends.base", f"{path.name} imports {node.module}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in udtc.available_backends() or node.value == "cosine" and path.name == "args.py", \
                    f"{path.name} names the backend {node.value!r}"  # "cosine" is also an lr_scheduler there
            if isinstance(node, (ast.Name, ast.Attribute, ast.FunctionDef)):
                ident = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else node.name
                assert not class_name.search(ident), f"{path.name} names {ident}"


def test_moved_modules_still_import_with_a_deprecation_warning():
    import importlib
    import sys
    import warnings

    from udtc.compat import MOVED_MODULES

    for old, new in MOVED_MODULES.items():
        if new.startswith("benchmarks."):
            continue
        sys.modules.pop(old, None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(old)
        assert module is importlib.import_module(new)
        assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught), old
    from udtc.backends.gliclass import LABEL_TOKEN, NEW_MODEL_OPTIONS
    from udtc.backends.sce import SYNONYMS, WEIGHTS_NAME

    assert LABEL_TOKEN == "<<LABEL>>" and "pooling_strategy" in NEW_MODEL_OPTIONS
    assert WEIGHTS_NAME == "sce.safetensors" and "sports" in SYNONYMS
