"""genctl serve BUNDLE --port 8000 [--max-batch 64 --max-wait-ms 5 --max-queue 256 --timeout-s 60] [--ray | --triton]."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

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
    triton: Annotated[bool, typer.Option("--triton", help="Serve on the Triton Inference Server of the nvidia-pytriton wheel "
                                         "(KServe v2 HTTP + gRPC; model <family>_generate).")] = False,
    http_port: Annotated[Optional[int], typer.Option(help="Triton's HTTP port (default: --port).")] = None,
    grpc_port: Annotated[int, typer.Option(help="Triton's gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Triton's Prometheus metrics port.")] = 8002,
    max_queue_delay_us: Annotated[Optional[int], typer.Option(min=0, help="Triton's name for --max-wait-ms, in microseconds.")] = None,
    instances: Annotated[Optional[int], typer.Option(min=1, help="Triton model instances (processes; with --triton). Default 2: "
                                                 "with one, Triton's batcher sometimes idles ~500 ms (BENCHMARKS.md).")] = None,
) -> None:
    """Serve POST /generate with dynamic batching; /docs, /metrics, /healthz, /readyz, /manifest.

    With --triton: Triton's /v2/models/<family>_generate/infer (HTTP and gRPC) over the same sampler, Triton's
    dynamic batcher merging requests across conditions; /metrics on --metrics-port.
    """
    from genctl.errors import GenctlError
    from genctl.serve.app import ServeConfig

    if not 0 <= port <= 65535:  # before the bundle loads and sessions open
        raise GenctlError("--port", got=port, expected="a TCP port in 0..65535")
    if max_queue_delay_us is not None:
        max_wait_ms = max_queue_delay_us / 1000
    if triton and ray:
        raise GenctlError("--triton with --ray", got="both", expected="one server")
    if triton:
        _serve_triton(bundle, host, http_port if http_port is not None else port, grpc_port, metrics_port, backend, precision.value,
                      max_batch, int(round(max_wait_ms * 1000)), max_queue, instances or 2, max_rows)
        return
    for flag, value, default in (("--http-port", http_port, None), ("--grpc-port", grpc_port, 8001), ("--metrics-port", metrics_port, 8002),
                                 ("--instances", instances, None)):
        if value != default:
            raise GenctlError(flag, got=value, expected="it only with --triton")
    config = ServeConfig(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, timeout_s=timeout_s,
                         max_rows=max_rows)
    if ray:
        from genctl.serve.ray import serve_ray

        console.print(f"serving {bundle} on Ray Serve ({replicas} replicas) at http://{host}:{port}/  — Ctrl-C stops")
        serve_ray(bundle, backend=backend, precision=precision.value, config=config, replicas=replicas,
                  host=host, port=port)
        return
    _serve_here(bundle, host, port, backend, precision.value, config)


def _serve_triton(bundle: Path, host: str, http_port: int, grpc_port: int, metrics_port: int, backend: str, precision: str,
                  max_batch: int, max_wait_us: int, max_queue: int, instances: int, max_rows: int) -> None:
    from genctl import logs
    from genctl.errors import GenctlError
    from genctl.serve.triton_server import serve_bundle

    if backend not in ("auto", "onnxruntime"):
        raise GenctlError("--backend with --triton", got=backend, expected="onnxruntime (Triton's model runs the loop on ONNX Runtime)")

    def ready(server, name: str) -> None:
        console.print(f"serving {bundle} on Triton: http://{server.http_url}/v2/models/{name}/infer, gRPC {server.grpc_url}, "
                      f"metrics {server.metrics_url} (batch ≤ {max_batch} requests, wait ≤ {max_wait_us} µs, "
                      f"{instances} instance{'s' if instances > 1 else ''}; log {server.log_file if not logs.VERBOSE else 'on stderr'})"
                      "  — Ctrl-C stops")

    serve_bundle(bundle, host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port, max_batch=max_batch,
                 max_wait_us=max_wait_us, max_queue=max_queue, instances=instances, max_rows=max_rows, precision=precision,
                 verbose=logs.VERBOSE, on_ready=ready)


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
