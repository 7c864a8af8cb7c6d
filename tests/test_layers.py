"""The layers of the code hold: import-linter's contracts (pyproject.toml), and what each entry point loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (ROOT / "pyproject.toml").is_file(), reason="not a source checkout")
def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("module, absent", [
    ("waveui.frontends.status", {"textual", "psutil", "git"}),  # `waveui status`: a journal read, nothing more
    ("waveui.frontends.tui.app", {"psutil", "git"}),  # `waveui watch` without the live sampler
    # the engine knows nothing of the screen, nor of GitPython; Dask is loaded by runs on a cluster only
    ("waveui.engine.engine", {"textual", "git", "distributed", "dask"}),
    ("waveui.frontends.cli", {"distributed", "dask"}),
    ("waveui.run.state", {"textual", "psutil", "git", "networkx"}),  # the run model: plain data
])
def test_an_entry_point_loads_only_what_it_needs(module, absent):
    code = f"import sys, {module}; print(sorted(m for m in {sorted(absent)!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"{module} loads {done.stdout.strip()}"
