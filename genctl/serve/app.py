"""The HTTP server of one bundle: FastAPI (OpenAPI at ``/docs``) over a dynamic batcher.

``POST /generate`` with ``{"conditions": {"label": 7}, "n": 4, "seed": 0, "controls": {...}}``
returns ``{"rows": [...], "shape": [...], "samples": [[...]]}`` (images: nested lists in [-1, 1],
or ``"png_base64"`` of the grid with ``"format": "png"``) or ``{"texts": [...]}`` for text models.
Concurrent requests are merged into one sampler loop (``genctl.serve.batcher``); each keeps its
own seeded noise, so the answer is the one ``genctl generate`` gives. Bad requests get HTTP 400
with the CLI's one-line message; a full queue gets 503 with ``Retry-After``; a request past
``timeout_s`` gets 504. ``/metrics`` (Prometheus), ``/healthz``, ``/readyz`` (loaded and warmed).
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import math
import re
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import numpy as np
from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from genctl.bundle import Bundle
from genctl.errors import ConditionError, GenctlError
from genctl.runtime.generator import Generator
from genctl.runtime.samplers.base import Request, Samples
from genctl.serve.batcher import Batcher, QueueFull
from genctl.serve.metrics import Metrics

MAX_BODY = 1 << 20
ACCESS = logging.getLogger("genctl.serve.access")


@dataclass
class ServeConfig:
    """Server limits; the CLI flags of ``genctl serve`` map one to one."""

    max_batch: int = 64  # rows per sampler call
    max_wait_ms: float = 5.0  # how long the oldest request waits for company
    max_queue: int = 256  # requests waiting; past it: 503
    timeout_s: float = 60.0  # per request, queue + sampling; past it: 504
    max_rows: int = 1024  # rows (condition rows × n) one request may ask for
    max_body: int = MAX_BODY  # bytes


Scalar = Union[StrictInt, StrictFloat, StrictStr]


class GenerateRequest(BaseModel):
    """Body of ``POST /generate``. Conditions and controls are checked against the bundle's schema."""

    model_config = ConfigDict(extra="forbid")
    conditions: Optional[dict[str, Union[Scalar, list[Union[Scalar, list[Union[StrictInt, StrictFloat]]]]]]] = Field(
        None, description="Condition name → value, or a list (one grid row per item). Missing categorical "
                          "conditions mean every class.", examples=[{"label": 7}, {"label": [0, 1, 2]}])
    n: StrictInt = Field(1, description="Samples per condition row.")
    seed: StrictInt = Field(0, description="Seed of this request's noise: same seed, same samples, batched or not.")
    controls: dict[str, Optional[Scalar]] = Field(
        default_factory=dict, description="Sampling controls (temperature, steps, guidance_scale, top_k, ...).")
    prefix: Optional[StrictStr] = Field(None, description="Text models: the start of every generated text.")
    prompt: Optional[Union[StrictStr, list[StrictStr]]] = Field(
        None, description="Text-prompted models: the prompt of the text condition, or a list (one grid row each); "
                          "'' is unconditional. Different prompts in concurrent requests are batched together.",
        examples=["a bold 7 leaning right"])
    format: Literal["json", "png"] = Field("json", description="Images: 'json' nested lists or 'png' (base64 grid).")


class GenerateResponse(BaseModel):
    rows: list[str]
    n: int
    backend: str
    texts: Optional[list[str]] = None
    shape: Optional[list[int]] = None
    samples: Optional[list] = None
    png_base64: Optional[str] = None


def parse_body(gen: Generator, body: Any, config: ServeConfig | None = None) -> tuple[Request, str]:
    """Validate a decoded JSON body into a ``Request`` (own seeded rng) and the response format.

    Every problem is a ``GenctlError`` with the CLI's one-line message; nothing else escapes.
    """
    config = config or ServeConfig()
    if not isinstance(body, dict):
        raise GenctlError("Request body", got=type(body).__name__, expected="a JSON object")
    try:
        req = GenerateRequest.model_validate(body)
    except ValidationError as exc:
        raise _field_error(exc) from None
    if not 0 < req.n <= config.max_rows:
        raise GenctlError("Request 'n' (samples per condition)", got=req.n, expected=f"an integer in [1, {config.max_rows}]")
    kwargs = dict(req.controls)
    if req.prefix is not None:
        if gen.bundle.output_kind != "text":
            raise GenctlError("Request 'prefix'", got="a prefix for an image model", expected="no prefix")
        kwargs["prefix"] = req.prefix
    conditions = req.conditions
    if req.prompt is not None:
        conditions = gen.bundle.conditions.with_prompts(conditions, [req.prompt] if isinstance(req.prompt, str) else req.prompt,
                                                        subject="Request field 'prompt'")
    try:
        request = gen.request(conditions, n=req.n, seed=req.seed, **kwargs)
    except ConditionError as exc:  # the library names CLI flags (--seed, Control --temperature): name the request field
        raise as_request_field(exc) from None
    except (TypeError, ValueError, OverflowError) as exc:  # a value of the right JSON type but unusable
        raise GenctlError("Request", got=f"an unusable value ({exc})", expected="values as described at /docs") from None
    if request.total > config.max_rows:
        raise GenctlError("Request rows (condition rows × n)", got=request.total, expected=f"at most {config.max_rows}",
                          fix="split the request")
    return request, req.format


_FLAG_FIELDS = {"--seed": "seed", "--prefix": "prefix", "--max-new-tokens": "controls.max_new_tokens"}


def as_request_field(exc: ConditionError) -> ConditionError:
    """``--seed | got -5 | ...`` -> ``Request field 'seed' | got -5 | ...``: a subject naming a CLI flag (``--seed``,
    ``-n (samples per condition)``, ``Control --temperature``, ``Control 'steps'``) renamed to the request's field;
    other subjects (``Condition 'label'``) are kept."""
    subject = exc.subject
    if subject in _FLAG_FIELDS:
        field = _FLAG_FIELDS[subject]
    elif subject.startswith("-n "):
        field = "n"
    elif m := re.fullmatch(r"Control (?:--([a-z0-9-]+)|'([^']+)')", subject):
        field = "controls." + (m[1].replace("-", "_") if m[1] else m[2])
    else:
        return exc
    return ConditionError(f"Request field '{field}'", got=exc.got, expected=exc.expected, fix=exc.fix)


def _field_error(exc: ValidationError) -> GenctlError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    got = repr(first.get("input"))
    got = got if len(got) <= 60 else got[:57] + "..."
    return GenctlError(f"Request field '{where}'", got=got, expected=first["msg"].lower())


def render(gen: Generator, samples: Samples, fmt: str = "json") -> dict:
    """The response body for ``samples``: texts, a PNG grid, or nested lists rounded to 5 digits."""
    out: dict[str, Any] = {"rows": samples.rows, "n": samples.n, "backend": gen.backend.describe()}
    if samples.kind == "text":
        out["texts"] = samples.texts
    elif fmt == "png":
        from genctl.render.samples import grid_image

        buf = io.BytesIO()
        grid_image(samples).save(buf, format="PNG")
        out["png_base64"] = base64.b64encode(buf.getvalue()).decode()
    else:
        out["shape"] = list(samples.data.shape)
        out["samples"] = samples.data.astype(np.float64).round(5).tolist()  # float64: short decimals in JSON
    return out


def handle_generate(gen: Generator, body: dict, config: ServeConfig | None = None) -> dict:
    """Validate ``body`` and generate synchronously (no queue): the response dict, or ``GenctlError``."""
    request, fmt = parse_body(gen, body, config)
    return render(gen, gen.generate_many([request])[0], fmt)


def server_backend(bundle: Bundle, backend: str = "auto", precision: str = "fp32") -> str:
    """The backend a server opens for ``backend``: ONNX Runtime without busy-waiting threads unless
    options were given. In a server the event loop needs the cores the idle intra-op threads would
    spin on (batched diffusion on the 2-core box: 26 → 45 rows/s, BENCHMARKS.md)."""
    from genctl.runtime.backends import auto_backend

    base = auto_backend(bundle, precision) if backend == "auto" else backend
    return base + "+nospin" if base == "onnxruntime" else backend


def load_generator(bundle: str | Path | Bundle, backend: str = "auto", precision: str = "fp32") -> Generator:
    """``Generator.load`` with the server's backend default (``server_backend``)."""
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    return Generator.load(bundle, backend=server_backend(bundle, backend, precision), precision=precision)


def create_app(gen: Generator | Bundle | str | Path, config: ServeConfig | None = None, *,
               backend: str | None = None, precision: str | None = None) -> FastAPI:
    """The ASGI app: batcher started and the model warmed in the lifespan, ``/readyz`` true after.

    ``gen`` is an open Generator (its caller closes it), or a bundle (folder): the app then opens
    it with ``backend`` / ``precision`` (default ``auto`` / ``fp32``) as ``genctl serve`` does
    (``load_generator``) and closes it when the lifespan ends.
    """
    config = config or ServeConfig()
    owned = not isinstance(gen, Generator)
    if owned:
        gen = load_generator(gen, backend or "auto", precision or "fp32")
    elif backend is not None or precision is not None:
        raise TypeError("create_app: backend= and precision= open a bundle; this Generator already has its backend")
    state: dict[str, Any] = {"ready": False}
    batcher = Batcher(gen, max_batch=config.max_batch, max_wait_ms=config.max_wait_ms, max_queue=config.max_queue)
    metrics = Metrics(depth=lambda: batcher.depth, prompt_cache=gen.prompt_cache if gen.bundle.conditions.encoders else None)
    batcher.on_batch = metrics.batch

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # warm-up before the worker exists (so nothing else touches the generator): first calls are slow
        await asyncio.to_thread(gen.generate_many, [gen.request(None, n=1, seed=0)])
        batcher.start()
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            batcher.stop()
            if owned:
                gen.close()

    app = FastAPI(title=f"genctl: {gen.bundle.family}", lifespan=lifespan,
                  description="Controlled generation over one bundle; concurrent requests are batched.")
    app.state.batcher, app.state.metrics, app.state.config = batcher, metrics, config

    app.add_middleware(AccessLog)

    @app.post("/generate", response_model=GenerateResponse, openapi_extra=_body_schema(),
              responses={400: {"description": "Bad request (one-line message)"}, 503: {"description": "Queue full"},
                         504: {"description": "Timed out"}})
    async def generate(request: HTTPRequest):
        start = time.perf_counter()
        response = await _generate(request, gen, batcher, config)
        metrics.request(response.status_code, time.perf_counter() - start)
        return response

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "family": gen.bundle.family, "backend": gen.backend.describe()}

    @app.get("/readyz")
    def readyz():
        return JSONResponse({"ready": state["ready"]}, status_code=200 if state["ready"] else 503)

    @app.get("/manifest")
    def manifest() -> dict:
        return gen.bundle.manifest

    @app.get("/metrics")
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


class AccessLog:
    """One concise line per request (client, method, path, status, ms, rows); plain ASGI, so it
    costs microseconds, unlike Starlette's BaseHTTPMiddleware."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, seen = time.perf_counter(), {}

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["rows"] = dict(message.get("headers") or []).get(b"x-genctl-rows", b"").decode()
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            if ACCESS.isEnabledFor(logging.INFO):
                client = (scope.get("client") or ("-",))[0]
                rows = f" rows={seen['rows']}" if seen.get("rows") else ""
                ACCESS.info("%s %s %s %s %.1fms%s", client, scope["method"], scope["path"], seen.get("status", "-"),
                            (time.perf_counter() - start) * 1000, rows)


def _body_schema() -> dict:
    """The typed model in OpenAPI, while the handler reads the raw body (size limit, one-line errors)."""
    schema = GenerateRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _generate(request: HTTPRequest, gen: Generator, batcher: Batcher, config: ServeConfig) -> Response:
    body = await _read_body(request, config.max_body)
    if body is DISCONNECTED:  # nobody to answer: one access-log line (499) and the counter, no traceback
        request.app.state.metrics.disconnects.inc()
        return Response(status_code=499)
    if isinstance(body, Response):
        return body
    try:  # a text prompt runs the encoder graph while parsing: off the event loop then
        req, fmt = await asyncio.to_thread(parse_body, gen, body, config) if gen.bundle.conditions.encoders \
            else parse_body(gen, body, config)
    except GenctlError as exc:
        return _error(400, str(exc))
    try:
        samples = await batcher.submit(req, config.timeout_s)
    except QueueFull:
        retry = max(1, math.ceil(config.max_wait_ms / 1000 + 0.5))
        return _error(503, f"Server queue | got {config.max_queue} requests waiting | expected fewer | fix: retry later",
                      headers={"Retry-After": str(retry)})
    except asyncio.TimeoutError:
        return _error(504, f"Request | got no result within {config.timeout_s:g} s | expected one | fix: retry, "
                           "ask for fewer rows, or raise --timeout-s")
    except GenctlError as exc:
        return _error(400, str(exc))
    except Exception as exc:  # noqa: BLE001  (a bug, not the caller's fault: logged, counted, answered)
        logging.getLogger("genctl.serve").exception("generation failed")
        return _error(500, f"Server | got {type(exc).__name__} while generating | expected none | fix: report a bug")
    out = await asyncio.to_thread(render, gen, samples, fmt) if fmt == "png" else render(gen, samples, fmt)  # PNG off the loop
    return Response(json.dumps(out, ensure_ascii=False), media_type="application/json",
                    headers={"x-genctl-rows": str(req.total)})


DISCONNECTED = object()  # _read_body: the client went away before its body was read


async def _read_body(request: HTTPRequest, limit: int) -> Any:
    """The decoded JSON body, a 400/413 response, or ``DISCONNECTED``; reads at most ``limit`` bytes."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return _error(413, f"Request body | got {declared} bytes | expected at most {limit}")
    data = bytearray()
    try:
        async for chunk in request.stream():
            data += chunk
            if len(data) > limit:
                return _error(413, f"Request body | got more than {limit} bytes | expected at most {limit}")
    except ClientDisconnect:
        return DISCONNECTED
    try:
        return json.loads(bytes(data) or b"{}")
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, 5000-digit ints, deep nesting
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        return _error(400, f"Request body | got invalid JSON ({msg}) | expected a JSON object")
