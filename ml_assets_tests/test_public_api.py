"""ml_assets uses only Dagster's public API, except in the one module that says why it cannot."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ml_assets"

ALLOWED_PRIVATE = {"local_event_log.py"}
"""The pooled event log: Dagster has no public hook into its SQLite storage (the module says
why, and steps aside on a Dagster it was not tested with)."""


def _imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


def test_no_module_but_the_event_log_imports_dagster_internals() -> None:
    private = [
        f"{path.relative_to(PACKAGE.parent)}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if str(path.relative_to(PACKAGE)) not in ALLOWED_PRIVATE
        for name in _imported_modules(path)
        if name.startswith(("dagster._", "dagster_shared", "dagster_mlflow._"))
    ]
    assert private == []


def test_the_event_log_is_the_one_exception_and_it_does_import_internals() -> None:
    # If it stopped needing them, the exception should go too.
    (allowed,) = ALLOWED_PRIVATE
    assert any(name.startswith("dagster._") for name in _imported_modules(PACKAGE / allowed))
