"""A small JSON-over-HTTP server for one bundle.

``POST /generate`` with ``{"conditions": {"label": 7}, "n": 4, "seed": 0, "controls": {...}}``
returns ``{"rows": [...], "shape": [...], "samples": [[...]]}`` (images: nested lists in [-1, 1],
or ``"png_base64"`` of the grid with ``"format": "png"``) or ``{"texts": [...]}`` for text models.
Bad requests get HTTP 400 with the same one-line message the CLI prints. One generator serves
requests one at a time (a lock); run several processes behind a balancer to scale out.
"""
from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from genctl.errors import GenctlError
from genctl.runtime.generator import Generator

MAX_BODY = 1 << 20


def handle_generate(gen: Generator, body: dict) -> dict:
    if not isinstance(body, dict):
        raise GenctlError("Request body", got=type(body).__name__, expected="a JSON object")
    controls = body.get("controls") or {}
    if not isinstance(controls, dict):
        raise GenctlError("Request 'controls'", got=type(controls).__name__, expected="an object of control values")
    samples = gen.generate(body.get("conditions"), n=body.get("n", 1), seed=body.get("seed", 0), **controls)
    out = {"rows": samples.rows, "n": samples.n, "backend": gen.backend.describe()}
    if samples.kind == "text":
        out["texts"] = samples.texts
    elif body.get("format") == "png":
        from genctl.render.samples import grid_image

        buf = io.BytesIO()
        grid_image(samples).save(buf, format="PNG")
        out["png_base64"] = base64.b64encode(buf.getvalue()).decode()
    else:
        out["shape"] = list(samples.data.shape)
        out["samples"] = samples.data.round(5).tolist()
    return out


def make_server(gen: Generator, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, payload: dict) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/healthz":
                self._send(200, {"status": "ok", "family": gen.bundle.family, "backend": gen.backend.describe()})
            elif self.path == "/manifest":
                self._send(200, gen.bundle.manifest)
            else:
                self._send(404, {"error": f"Path '{self.path}' | got an unknown path | expected /healthz, /manifest or POST /generate"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/generate":
                self._send(404, {"error": f"Path '{self.path}' | got an unknown path | expected POST /generate"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._send(413, {"error": f"Request body | got {length} bytes | expected at most {MAX_BODY}"})
                return
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
                with lock:
                    self._send(200, handle_generate(gen, body))
            except json.JSONDecodeError as exc:
                self._send(400, {"error": f"Request body | got invalid JSON ({exc.msg}) | expected a JSON object"})
            except (GenctlError, TypeError) as exc:
                self._send(400, {"error": str(exc)})

        def log_message(self, fmt: str, *args) -> None:  # quiet by default; --verbose shows requests
            from genctl.logs import VERBOSE

            if VERBOSE:
                super().log_message(fmt, *args)

    return ThreadingHTTPServer((host, port), Handler)
