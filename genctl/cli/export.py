"""genctl export CHECKPOINT --out BUNDLE."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genctl.cli.common import console, user_errors


@user_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder written by 'genctl train'.")],
    out: Annotated[Path, typer.Option(help="Bundle folder to write.")] = Path("bundles/model"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle.")] = False,
) -> None:
    """Export to ONNX with graph and loop parity checks; the bundle appears only if all pass."""
    from genctl.export import export_bundle

    bundle = export_bundle(checkpoint, out, overwrite=force)
    parity = bundle.manifest["parity"]
    worst = max(r["max_error"] for r in parity["graphs"].values())
    console.print(f"exported [bold]{bundle.family}[/] → {out}: graphs {', '.join(bundle.graphs)}; "
                  f"graph parity max err {worst:.1e}, loop parity err {parity['loop']['max_error']:.1e} "
                  f"(tolerance {parity['loop']['tolerance']:.0e})")
