"""The trainer modules the UI shares stay torch-free at run time (DESIGN.md, "Dependency direction").

The import graph itself (the UI imports nothing of the backend and from the trainer only these modules; the
backend never imports the UI; the trainer nothing above it) is checked by import-linter's contracts in
``.importlinter`` (``make lint``). What a static graph cannot see stays here: importing a shared module also runs
its packages' ``__init__`` files, which must not pull torch into the UI's process.
"""
from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _shared_modules() -> list[str]:
    """The modules the UI may import from the trainer, as the import contract lists them (one list, not two)."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    ignored = config["importlinter:contract:frontend-pure-trainer-modules"]["ignore_imports"].split("\n")
    return sorted(line.split("->")[1].strip() for line in ignored if "->" in line)


def test_the_shared_modules_load_without_torch():
    shared = _shared_modules()
    assert shared == ["trainer.downsample", "trainer.errors", "trainer.optim.radius"]
    code = f"import sys, importlib; [importlib.import_module(m) for m in {shared!r}]; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "False"
