"""genctl serve BUNDLE --port 8000 [--max-batch 64 --max-wait-ms 5 --max-queue 256 --timeout-s 60]."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from genctl.cli.common import console, user_errors
from genctl.cli.options import BackendOption, Precision, PrecisionOption


@user_errors
def serve(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder.")],
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    backend: BackendOption = "auto",
    precision: PrecisionOption = Precision.fp32,
    max_batch: Annotated[int, typer.Option(min=1, help="Rows per sampler call (requests are merged up to this).")] = 64,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="How long the oldest request waits for others to join.")] = 5.0,
    max_queue: Annotated[int, typer.Option(min=1, help="Requests waiting; past it the server answers 503.")] = 256,
    timeout_s: Annotated[float, typer.Option(min=0.001, help="Per-request limit (queue + sampling); past it 504.")] = 60.0,
    max_rows: Annotated[int, typer.Option(min=1, help="Rows (condition rows × n) one request may ask for.")] = 1024,
    ray: Annotated[bool, typer.Option("--ray", help="Serve on Ray Serve (pip install 'genctl[ray]').")] = False,
    replicas: Annotated[int, typer.Option(min=1, help="Ray Serve replicas (with --ray).")] = 1,
) -> None:
    """Serve POST /generate with dynamic batching; /docs, /metrics, /healthz, /readyz, /manifest."""
    from genctl.errors import GenctlError
    from genctl.serve.app import ServeConfig

    if not 0 <= port <= 65535:  # before the bundle loads and sessions open
        raise GenctlError("--port", got=port, expected="a TCP port in 0..65535")
    config = ServeConfig(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, timeout_s=timeout_s,
                         max_rows=max_rows)
    if ray:
        from genctl.serve.ray import serve_ray

        console.print(f"serving {bundle} on Ray Serve ({replicas} replicas) at http://{host}:{port}/  — Ctrl-C stops")
        serve_ray(bundle, backend=backend, precision=precision.value, config=config, replicas=replicas,
                  host=host, port=port)
        return
    _serve_here(bundle, host, port, backend, precision.value, config)


def _serve_here(bundle: Path, host: str, port: int, backend: str, precision: str, config) -> None:
    from genctl.serve import server
    from genctl.serve.app import ACCESS, create_app, load_generator

    gen = load_generator(bundle, backend, precision)
    if not ACCESS.handlers:  # one concise line per request on stderr
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        ACCESS.addHandler(handler)
    ACCESS.setLevel(logging.INFO)
    ACCESS.propagate = False
    console.print(f"serving {bundle} ({gen.bundle.family}, {gen.backend.describe()}) on http://{host}:{port} "
                  f"(batch ≤ {config.max_batch} rows, wait ≤ {config.max_wait_ms:g} ms)  — Ctrl-C stops")
    try:
        server.run(create_app(gen, config), host, port)
    except KeyboardInterrupt:
        pass
    finally:
        gen.close()
