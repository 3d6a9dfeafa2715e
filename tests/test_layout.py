"""The package layout stays honest: the declared layers hold, and no folder is named like build output."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "genctl"


def test_import_contracts_hold():
    """The import-linter contracts in pyproject (layers, runtime below the builder, no library → CLI) are kept."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    run = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]


def test_no_package_folder_named_like_build_output():
    generated = {"build", "dist", "out"}
    assert not [p for p in PKG.rglob("*") if p.is_dir() and p.name in generated]
