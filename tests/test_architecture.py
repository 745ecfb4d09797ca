"""The architecture's rules that no import contract checks: modules that read in one sitting,
functions that fit on a screen, and the import contracts of pyproject.toml themselves.

Compiled kernels are exempt from the function length, since a kernel's loop nest reads best
whole: functions decorated with numba's ``njit`` or Triton's ``jit``, and the code generators
that write kernels (``*_source``).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "toyrelu"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
KERNEL_DECORATORS = ("njit", "jit")


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _is_kernel_or_generator(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    if node.name.endswith("_source"):
        return True
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in KERNEL_DECORATORS:
            return True
    return False


def long_functions(path: Path, root: Path = SRC) -> list[str]:
    """``module:line name (length)`` of every function of ``path`` over the limit."""
    module = path.relative_to(root).as_posix()
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and not _is_kernel_or_generator(node):
                found.append(f"{module}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_the_rules_see_the_whole_package() -> None:
    names = {p.relative_to(SRC).as_posix() for p in modules()}
    assert {"cli/entry.py", "core/config.py", "engines/cpu/engine.py", "runs/sweep.py"} <= names


def test_no_module_is_over_400_lines() -> None:
    sizes = {p.relative_to(SRC).as_posix(): len(p.read_text().splitlines()) for p in modules()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_function_is_over_60_lines_outside_kernels_and_generators() -> None:
    assert [f for p in modules() for f in long_functions(p)] == []


def test_the_length_rule_catches_a_long_function_and_spares_a_kernel(tmp_path: Path) -> None:
    body = "\n".join(f"    x = {i}" for i in range(MAX_FUNCTION_LINES))
    module = tmp_path / "long.py"
    module.write_text(f"def long():\n{body}\n\n\n@numba.njit\ndef kernel():\n{body}\n\n\n"
                      f"def kernel_source():\n{body}\n")
    assert long_functions(module, tmp_path) == [f"long.py:1 long ({MAX_FUNCTION_LINES + 1} lines)"]


def test_the_import_contracts_hold() -> None:
    # lint-imports sits beside the interpreter that runs the tests (the test extra installs it).
    command = Path(sys.executable).with_name("lint-imports")
    if not command.exists():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
        command = Path(found)
    result = subprocess.run([str(command), "--no-cache"], capture_output=True, text=True,
                            cwd=SRC.parents[1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
