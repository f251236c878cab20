"""The UI talks to the API over HTTP: it imports nothing from the backend, and from the trainer only the pure
shared modules (DESIGN.md, "Dependency direction")."""
from __future__ import annotations

import ast
from pathlib import Path

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
# torch-free modules the UI shares with the trainer and the API: one definition each
SHARED = {"trainer.errors", "trainer.downsample", "trainer.optim.radius"}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if node.module in ("trainer", "backend")}
    return out


def test_the_frontend_imports_only_the_shared_pure_modules_of_the_trainer_and_nothing_of_the_backend():
    bad = {}
    for path in sorted(FRONTEND.rglob("*.py")):
        names = {n for n in _imports(path) if n.split(".")[0] in ("trainer", "backend")}
        if names - SHARED:
            bad[str(path.relative_to(FRONTEND))] = sorted(names - SHARED)
    assert bad == {}


def test_the_shared_modules_load_without_torch():
    import subprocess
    import sys

    code = ("import sys, importlib; [importlib.import_module(m) for m in %r]; "
            "print('torch' in sys.modules)" % sorted(SHARED))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=FRONTEND.parent).stdout
    assert out.strip() == "False"
