"""The package's imports point one way (command line -> export / verify / push -> card / stats -> builder):
no module imports one that imports it back, directly or through others, deferred imports included."""

import ast

from conftest import REPO

MODULES = {"claudesidian_synthetic": REPO / "claudesidian_synthetic.py",
           **{f"claudesidian_tools.{path.stem}": path for path in (REPO / "claudesidian_tools").glob("*.py")}}
# Only the command line is imported by nothing but the command line.
COMMAND_LINE = {"claudesidian_tools.cli", "claudesidian_tools.command", "claudesidian_tools.__main__"}


def imports_of(path) -> set:
    """The package's modules that `path` imports anywhere (a function's deferred import counts)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found & set(MODULES)


def graph() -> dict:
    return {name: imports_of(path) - {name} for name, path in MODULES.items()}


def circle(edges: dict) -> list:
    """One import circle as a list of modules (first == last), or [] when there is none."""
    state, stack = {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for imported in sorted(edges[module]):
            if state.get(imported) == "open":
                return stack[stack.index(imported):] + [imported]
            if imported not in state and (found := visit(imported)):
                return found
        state[module] = "done"
        stack.pop()
        return []

    for module in sorted(edges):
        if module not in state and (found := visit(module)):
            return found
    return []


def test_no_module_imports_one_that_imports_it_back():
    edges = graph()
    assert len(edges) >= 15 and edges["claudesidian_tools.export"]  # the walk found the package
    assert circle(edges) == [], " -> ".join(circle(edges))


def test_the_circle_finder_finds_a_circle():
    assert circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert circle({"a": {"b"}, "b": set()}) == []


def test_the_builder_imports_no_tool_and_only_the_command_line_imports_the_command_line():
    edges = graph()
    assert edges["claudesidian_synthetic"] == set()
    for module, imported in edges.items():
        if module not in COMMAND_LINE:
            assert not imported & COMMAND_LINE, module
