"""The package layout stays honest: the library never reaches up into the CLI."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "genctl"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_library_module_imports_the_cli():
    offenders = [str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py")
                 if "cli" not in p.relative_to(PKG).parts[:1] and p != PKG / "__main__.py"  # `python -m genctl` is the CLI
                 and any(m == "genctl.cli" or m.startswith("genctl.cli.") for m in _imports(p))]
    assert offenders == []


def test_no_package_folder_named_like_build_output():
    generated = {"build", "dist", "out"}
    assert not [p for p in PKG.rglob("*") if p.is_dir() and p.name in generated]
