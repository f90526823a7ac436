"""The package's import graph has no cycle (package ``__init__`` faces aside)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "trellic"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the trellic modules it imports anywhere in its file (lazy imports too)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    packages = {_module_name(p) for p in PACKAGE.rglob("__init__.py")}
    graph = {}
    for name, path in files.items():
        if name in packages:
            continue  # a face: it only hands names on
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {f"{node.module}.{alias.name}" for alias in node.names} | {node.module}
        graph[name] = {t for t in targets if t in files and t not in packages and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_trellic_has_no_import_cycle():
    graph = import_graph()
    assert "trellic.quant.registry" in graph["trellic.coding.bitstream"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_quantizers_never_import_the_coder_or_the_models():
    for module, targets in import_graph().items():
        if module.startswith("trellic.quant."):
            assert not {t for t in targets if t.startswith(("trellic.coding", "trellic.models",
                                                           "trellic.latent"))}, module
