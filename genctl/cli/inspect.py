"""genctl inspect BUNDLE [--json]."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from genctl.cli.common import console, user_errors


def _shape(t) -> str:
    return f"{t.dtype}[{', '.join(str(d) for d in t.shape)}]"


def graphs_table(bundle) -> Table:
    table = Table(title="graphs", title_justify="left")
    for col in ("graph", "inputs (role)", "outputs", "sha256", "parity err"):
        table.add_column(col)
    parity = bundle.manifest.get("parity", {}).get("graphs", {})
    for name, g in bundle.graphs.items():
        ins = "\n".join(f"{t.name}: {_shape(t)} ({t.role})" for t in g.inputs)
        outs = "\n".join(f"{t.name}: {_shape(t)}" for t in g.outputs)
        err = parity.get(name, {}).get("max_error")
        table.add_row(f"{name}\n{g.file}", ins, outs, g.sha256[:12], "" if err is None else f"{err:.1e}")
    return table


def summary_table(bundle) -> Table:
    m = bundle.manifest
    table = Table(show_header=False, title=f"bundle {bundle.path}", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    prov = m.get("provenance", {})
    loop = m.get("parity", {}).get("loop", {})
    rows = [("family", m["family"]), ("schema", str(m["schema_version"])),
            ("dataset", f"{m['dataset']['name']} {m['dataset'].get('shape', '')}"),
            ("sampler", f"{m['sampler']['kind']}  defaults {m['sampler'].get('defaults', {})}"),
            ("loop parity", f"err {loop.get('max_error', float('nan')):.1e} ≤ {loop.get('tolerance', 0):.0e}: "
                            f"{'passed' if loop.get('passed') else 'FAILED'}"),
            ("provenance", ", ".join(f"{k} {prov[k]}" for k in ("torch", "onnx", "opset", "onnxruntime") if k in prov)),
            ("training", json.dumps({k: v for k, v in prov.get("training", {}).items() if not isinstance(v, dict)})),  # no threshold tables
            ("variants", ", ".join(f"{k} ({v.get('status', '?')})" for k, v in m.get("variants", {}).items()) or "—"),
            ("engines", ", ".join(m.get("engines", {})) or "—")]
    if m.get("tuned"):
        from genctl.tune.report import describe_tuned

        rows.append(("tuned", describe_tuned(m["tuned"])))
    for cond in bundle.conditions.conditions:
        rows.append((f"condition {cond.name}", cond.describe()))
    for key, value in rows:
        table.add_row(key, str(value))
    return table


@user_errors
def inspect(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Show a bundle: family, conditions, graphs with their I/O contracts, parity, provenance."""
    from genctl.bundle import Bundle

    b = Bundle.load(bundle)
    if as_json:
        typer.echo(json.dumps(b.manifest, indent=2, ensure_ascii=False))
        return
    console.print(summary_table(b))
    console.print(graphs_table(b))
