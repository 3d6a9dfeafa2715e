"""genctl loadtest URL --concurrency 32 --duration 10 [--rate R] [--body JSON] [--json FILE]."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from genctl.cli.common import console, user_errors


@user_errors
def loadtest(
    url: Annotated[str, typer.Argument(help="Base URL of a genctl server, e.g. http://127.0.0.1:8000.")],
    concurrency: Annotated[int, typer.Option(min=1, help="Workers (closed loop) or most requests in flight (--rate).")] = 32,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds of load; requests in flight at the end are awaited.")] = 10.0,
    rate: Annotated[Optional[float], typer.Option(min=0.001, help="Open loop: start this many requests per second.")] = None,
    body: Annotated[str, typer.Option(help="JSON body of every request (its seed is replaced by a counter).")] = '{"n": 1}',
    timeout: Annotated[float, typer.Option(min=0.001, help="Client timeout per request, seconds.")] = 60.0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the result here.")] = None,
) -> None:
    """Drive POST /generate and report achieved rows/s, p50/p90/p99 latency and 503 (backpressure) count."""
    from genctl.errors import GenctlError
    from genctl.serve.loadtest import load_test

    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise GenctlError("--body", got=f"invalid JSON ({exc.msg})", expected="a JSON object") from None
    if not isinstance(payload, dict):
        raise GenctlError("--body", got=type(payload).__name__, expected="a JSON object")
    r = load_test(url, payload, concurrency=concurrency, duration_s=duration, rate=rate, timeout_s=timeout)
    mode = f"open loop {rate:g} req/s" if rate else "closed loop"
    console.print(f"{r.url}  {mode}, concurrency {r.concurrency}, {r.seconds:.1f} s")
    console.print(f"  requests {r.requests}  ok {r.ok}  503 {r.rejected}  by status {r.status}")
    console.print(f"  rows/s {r.rows_per_s:.1f}  requests/s {r.requests_per_s:.1f}  "
                  f"latency p50 {r.p50_ms:.1f} ms  p90 {r.p90_ms:.1f} ms  p99 {r.p99_ms:.1f} ms")
    if json_out is not None:
        json_out.write_text(json.dumps(r.to_json(), indent=2) + "\n")
        console.print(f"wrote {json_out}")
