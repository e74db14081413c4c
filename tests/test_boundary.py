"""TensorFlow stays behind `cifar_mtl.training`: the rest of the library never loads it on import."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import cifar_mtl

PACKAGE = Path(cifar_mtl.__file__).parent
HEAVY = ("tensorflow", "keras", "cifar_mtl.training")


def _outside_training() -> list[str]:
    return sorted(
        m.name for m in pkgutil.walk_packages([str(PACKAGE)], "cifar_mtl.")
        if not (m.name == "cifar_mtl.training" or m.name.startswith("cifar_mtl.training."))
    )


def _top_level_imports(path: Path) -> set[str]:
    """Modules a file imports outside any function or class (module level, ifs and trys included)."""
    names = set()
    todo = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            todo += [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                todo += handler.body
    return names


def _is_heavy(name: str) -> bool:
    return any(name == h or name.startswith(h + ".") for h in HEAVY)


def test_no_module_outside_training_imports_tensorflow_at_module_level():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if "training" in path.relative_to(PACKAGE).parts:
            continue
        heavy = sorted(n for n in _top_level_imports(path) if _is_heavy(n))
        if heavy:
            offenders[str(path.relative_to(PACKAGE))] = heavy
    assert not offenders


def test_importing_the_library_loads_no_tensorflow():
    modules = _outside_training()
    assert "cifar_mtl.cli" in modules and "cifar_mtl.analysis" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    if name != 'cifar_mtl.__main__':\n"
        "        importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras') or m.startswith('cifar_mtl.training')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
