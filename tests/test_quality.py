"""The linter and the type checker run with the tests, so CI fails on either."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    exe = Path(sys.executable).with_name(name)
    path = str(exe) if exe.exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return path


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [_tool("ruff"), "check", "src", "tests", "benchmarks", "studies"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


def test_the_library_holds_no_study_write_up() -> None:
    """The paper's write-up lives in studies/findings: the package never imports it, and no module of
    the package speaks of the study's questions."""
    for path in (ROOT / "src" / "classwise").rglob("*.py"):
        assert not any(m.split(".")[0] == "studies" for m, _ in _imports(path)), path
        assert "question (" not in path.read_text(), f"{path} speaks of the study's questions"


def test_the_report_never_imports_training_code() -> None:
    """What a report shows comes from stored results (whether a model was adversarially trained
    included), so classwise.report imports nothing of classwise.train."""
    for path in (ROOT / "src" / "classwise" / "report").rglob("*.py"):
        for module, names in _imports(path):
            assert not module.startswith("classwise.train"), f"{path} imports {module}"
            assert not (module == "classwise" and "train" in names), f"{path} imports classwise.train"


def test_the_study_write_up_uses_only_the_public_api() -> None:
    """studies/findings imports from classwise only packages and the names they list in __all__."""
    for path in (ROOT / "studies" / "findings").glob("*.py"):
        for module, names in _imports(path):
            if module.split(".")[0] != "classwise":
                continue
            package = importlib.import_module(module)
            assert hasattr(package, "__path__") or module == "classwise.errors", f"{path}: {module} is no package"
            public = set(getattr(package, "__all__", ())) | {"ClasswiseError", "ConfigError"}
            if hasattr(package, "__path__"):  # a subpackage named in the import is public too
                public |= {n for n in names if importlib.util.find_spec(f"{module}.{n}") is not None}
            assert set(names) <= public, f"{path}: {module} does not export {sorted(set(names) - public)}"


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's lines without its signature and docstring."""
    body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
    return body[-1].end_lineno - body[0].lineno + 1 if body and body[-1].end_lineno else 0


def test_no_module_over_400_lines_and_no_function_over_60() -> None:
    long_modules, long_functions = [], []
    for path in sorted((ROOT / "src" / "classwise").rglob("*.py")):
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        if text.count("\n") > 400:
            long_modules.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _body_lines(node) > 60:
                long_functions.append(f"{name}:{node.lineno} {node.name}: {_body_lines(node)} lines")
    assert not long_modules, "split these modules: " + "; ".join(long_modules)
    assert not long_functions, "split these functions: " + "; ".join(long_functions)
