"""No import cycles among the modules of `ml_assets.lib`, function-level imports included.

A cycle hidden in a function (as `trip_schema` importing `schemas` inside `normalize_trips` once
was) works until someone moves the import, and makes neither module readable on its own.
"""

import ast
from pathlib import Path

import ml_assets.lib

LIB = Path(ml_assets.lib.__file__).parent
PACKAGE = "ml_assets.lib"


def imported_lib_modules(path: Path) -> set[str]:
    """The `ml_assets.lib` modules `path` imports anywhere: top level, functions, TYPE_CHECKING."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == PACKAGE:  # from ml_assets.lib import sample_source
                names = [f"{PACKAGE}.{alias.name}" for alias in node.names]
            else:
                names = [node.module]
        else:
            continue
        found |= {name for name in names if name.startswith(f"{PACKAGE}.")}
    return found


def import_graph() -> dict[str, set[str]]:
    return {
        f"{PACKAGE}.{path.stem}": imported_lib_modules(path)
        for path in sorted(LIB.glob("*.py"))
        if path.stem != "__init__"
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle of `graph`, each once, as the modules along it."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(module: str, path: list[str]) -> None:
        for imported in sorted(graph.get(module, ())):
            if imported == path[0]:
                if frozenset(path) not in seen:
                    seen.add(frozenset(path))
                    found.append([*path, imported])
            elif imported not in path and imported > path[0]:
                walk(imported, [*path, imported])

    for start in sorted(graph):
        walk(start, [start])
    return found


def test_the_cycle_finder_finds_a_hidden_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]


def test_no_lib_module_imports_one_that_imports_it_back() -> None:
    graph = import_graph()
    assert "ml_assets.lib.trip_schema" in graph["ml_assets.lib.schemas"]
    assert cycles(graph) == []


def test_the_trip_schema_needs_no_pandera() -> None:
    # Reading and normalizing trips happens in every ingestion step; pandera (with pandas) is
    # for the check steps.
    assert "ml_assets.lib.schemas" not in import_graph()["ml_assets.lib.trip_schema"]
