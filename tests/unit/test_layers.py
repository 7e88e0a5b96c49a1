"""Imports go one way (docs/architecture.md, "Boundaries"): checked on the source, so a shortcut
around the service layer fails here rather than in a review."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(where: str) -> list[tuple[str, str]]:
    """(file, imported module) for every import in `where`: a Python file, or those under a folder."""
    found = []
    paths = [ROOT / where] if where.endswith(".py") else sorted((ROOT / where).rglob("*.py"))
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found += [(str(path.relative_to(ROOT)), a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append((str(path.relative_to(ROOT)), node.module))
    return found


def _under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("caller", ["backend/api", "backend/web", "backend/cli"])
def test_callers_of_the_services_go_through_them(caller):
    # The CLI starts workers (`myriad worker`, `myriad run --here`): that one import is allowed.
    around = [
        (path, module)
        for path, module in _imports(caller)
        if _under(module, "backend.store", "backend.workflow", "backend.live")
        and module != "backend.workflow.worker"
    ]
    assert around == []


def test_the_api_and_the_dashboard_are_siblings():
    assert [i for i in _imports("backend/web") if _under(i[1], "backend.api")] == []
    assert [i for i in _imports("backend/api") if _under(i[1], "backend.web")] == []


def test_the_vocabulary_and_the_engine_import_no_service_code():
    assert [i for i in _imports("agents") if _under(i[1], "backend", "frontend")] == []
    assert [i for i in _imports("backend/domain.py") if _under(i[1], "backend")] == []
