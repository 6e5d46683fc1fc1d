"""stress_test talks to a gateway over HTTP only: it never imports the gateway's code (or the
tests'), so it measures any deployment, and its image needs none of the gateway's deps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.test_layers import imported_modules

PACKAGE = Path(__file__).resolve().parents[2] / "stress_test"
FORBIDDEN = ("app", "tests", "torch", "snac")


def test_no_module_imports_the_gateway() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) > 5
    violations = [
        f"{path.name} imports {name}"
        for path in files
        for name in imported_modules(path)
        if name.split(".")[0] in FORBIDDEN
    ]
    assert not violations, violations


def test_importing_every_module_loads_nothing_of_the_gateway() -> None:
    modules = [f"stress_test.{path.stem}" for path in sorted(PACKAGE.glob("*.py"))]
    modules.remove("stress_test.__main__")
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PACKAGE.parent,
        check=True,
    )
    assert done.stdout.strip() == "[]", done.stdout
