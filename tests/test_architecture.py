"""The shape of the package, pinned (issue 14): no import cycle across folders, short files."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every module another imports, lazy imports inside functions included."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while (top := stack.pop()) != node:
                        component.append(top)
                    found.append([node, *component])
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph[child]))))
            elif child in stack:
                low[node] = min(low[node], index[child])
    return [c for c in found if len(c) > 1]


def _folder(module: str) -> str:
    parts = module.split(".")  # hala.data.rows -> data; hala.cli, hala -> "." (the package's own top)
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (SRC / Path(*parts)).is_dir()) else "."


def test_no_import_cycle_between_modules_of_different_folders():
    crossing = [sorted(c) for c in _cycles(_imports(_modules())) if len({_folder(m) for m in c}) > 1]
    assert crossing == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a.x": {"b.y"}, "b.y": {"a.x"}, "c.z": {"a.x"}, "d.w": {"d.w"}}
    assert [sorted(c) for c in _cycles(graph)] == [["a.x", "b.y"]]


def test_no_file_over_300_lines_and_the_cli_under_200():
    lengths = {p.relative_to(SRC).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in SRC.rglob("*.py")}
    assert {p: n for p, n in lengths.items() if n > 300} == {}
    assert lengths["hala/cli.py"] <= 200
