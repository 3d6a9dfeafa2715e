"""genctl serve BUNDLE --port 8000."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genctl.cli.common import Backend, Precision, console, user_errors


@user_errors
def serve(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    backend: Annotated[Backend, typer.Option(help="Backend that runs the graphs.")] = Backend.auto,
    precision: Annotated[Precision, typer.Option(help="Graph variant.")] = Precision.fp32,
) -> None:
    """Serve POST /generate (JSON) over the Generator; GET /healthz and /manifest."""
    from genctl.errors import GenctlError
    from genctl.runtime.generator import Generator
    from genctl.serve import make_server

    if not 0 <= port <= 65535:
        raise GenctlError("--port", got=port, expected="a TCP port in 0..65535")
    gen = Generator.load(bundle, backend=backend.value, precision=precision.value)
    try:
        server = make_server(gen, host, port)
    except (OSError, OverflowError) as exc:
        raise GenctlError(f"--host/--port {host}:{port}", got=getattr(exc, "strerror", None) or str(exc), expected="a free port on a local address") from None
    console.print(f"serving {bundle} ({gen.bundle.family}, {gen.backend.describe()}) on http://{host}:{port}  — Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        gen.close()
