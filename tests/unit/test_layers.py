"""The package's layers (repro/__init__.py): no import goes upward, none forms a cycle, and the core
needs no torch. Read from the source (every import statement, inside functions too), not by importing."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from repro import LAYERS

PACKAGE = Path(__file__).resolve().parents[2] / "repro"
HEAVY = ("torch", "transformers", "datasets", "accelerate", "trl", "deepspeed", "vllm", "tokenizers")
"""The training stack: seconds to import, gigabytes to install; the core needs none of it."""


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> list[tuple[str, int]]:
    """(module imported, line) for every import in the file, absolute names."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import"
            out += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
            out.append((node.module, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    """Edges between the package's modules (an imported name resolves to the longest module prefix)."""
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, _ in imports(path):
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in known and target != name and target.startswith("repro"):
                edges[name].add(target)
    return edges


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return -1  # the package root: its version and this list, importing nothing
    assert parts[1] in LAYERS, f"{module} is in no layer of repro.LAYERS {LAYERS}"
    return LAYERS.index(parts[1])


def test_every_module_belongs_to_a_layer():
    for name in modules():
        layer(name)


def test_no_import_goes_upward():
    upward = [f"{source} ({LAYERS[layer(source)]}) imports {target} ({LAYERS[layer(target)]})"
              for source, targets in graph().items() for target in targets if layer(target) > layer(source)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    edges, state, cycles = graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [node, target]) if target in stack
                              else f"{node} -> {target}")
            elif target not in state:
                visit(target, stack + [node])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


def test_the_core_imports_nothing_else_of_the_suite_and_no_heavy_library():
    problems = []
    for name, path in modules().items():
        if layer(name) != LAYERS.index("core"):
            continue
        for target, line in imports(path):
            top = target.split(".")[0]
            if top in HEAVY or (top == "repro" and target != "repro" and not target.startswith("repro.core")):
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {target}")
    assert not problems, "\n".join(problems)


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The checks above can fail: a fake package with one upward import and one cycle."""
    fake = tmp_path / "repro"
    for rel, text in {"__init__.py": "", "core/__init__.py": "", "core/a.py": "from repro.cli import main\n",
                      "cli.py": "def main():\n    from repro.core import a\n"}.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match="repro.core.a .core. imports repro.cli .cli."):
        test_no_import_goes_upward()
    with pytest.raises(AssertionError, match="repro.cli -> repro.core.a -> repro.cli|repro.core.a -> repro.cli"):
        test_no_import_cycle()


@pytest.mark.slow
def test_the_core_imports_in_a_virtualenv_without_torch(tmp_path):
    """Every core module in a fresh virtualenv holding only the core's own dependencies (PyYAML,
    NumPy, tqdm): no torch anywhere."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "pyyaml>=6.0", "numpy>=1.26", "tqdm>=4.66"],
                   check=True, capture_output=True)
    core = sorted(name for name in modules() if name.startswith("repro.core"))
    script = ("import importlib, sys\n"
              f"for name in {core!r}:\n    importlib.import_module(name)\n"
              "assert 'torch' not in sys.modules\nprint('ok', len(sys.modules))\n")
    result = subprocess.run([str(python), "-c", script], cwd=PACKAGE.parent, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACKAGE.parent)})
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr
    assert subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode != 0
