"""Run an ASGI app with uvicorn: in the foreground (the CLI) or in a background thread (tests, loadtest)."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn

from genctl.errors import GenctlError


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a one-line error for a busy port / bad address (port 0: any free port)."""
    try:
        sock = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET, backlog=2048)
    except OSError as exc:
        raise GenctlError(f"--host/--port {host}:{port}", got=exc.strerror or str(exc),
                          expected="a free port on a local address") from None
    return sock


def _server(app, log_level: str = "warning") -> uvicorn.Server:
    # uvicorn's own access log is off: the app writes one concise line per request instead
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                                         timeout_graceful_shutdown=5))


def run(app, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until Ctrl-C."""
    sock = bind(host, port)
    _server(app).run(sockets=[sock])


@contextmanager
def background(app, host: str = "127.0.0.1", timeout_s: float = 120.0) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields the base URL once the app is up."""
    sock = bind(host, 0)
    server = _server(app, log_level="error")
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:  # lifespan (warm-up) done and socket serving
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
