"""Python run from a source checkout's root imports bsde/ from there: bsde.cli and bsde.problems must still
resolve (to cli/ and problems/, which an install maps into the package), or README's snippets and a direct
``torchrun -m bsde.cli`` fail where the set-up commands leave the user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "cli" / "__init__.py").is_file(), reason="needs the source checkout")
def test_checkout_maps_cli_and_problems():
    # -S: no site-packages, so nothing installed (an editable install's finder included) can supply the names
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import importlib.resources, importlib.util\n"
        "import bsde.problems\n"
        "print(importlib.util.find_spec('bsde.cli.app').origin)\n"
        "print(sorted(p.name for p in importlib.resources.files('bsde.problems').iterdir())[:2])\n"
    )
    done = subprocess.run([sys.executable, "-S", "-c", code, str(ROOT)], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    origin, problems = done.stdout.splitlines()
    assert Path(origin) == ROOT / "cli" / "app.py"
    assert "allen_cahn.yaml" in problems
