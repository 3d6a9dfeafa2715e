"""Ray Serve adapter: ``genctl serve BUNDLE --ray --replicas N`` (``pip install 'genctl[ray]'``).

One deployment per bundle; each replica loads its own ``Generator`` and batches with Ray's
``@serve.batch`` instead of genctl's batcher. The batch function is the same call as the plain
server's (``Generator.generate_many``), so requests keep their own seeded noise and a request
answers the same on any replica, batched or not. Request validation and responses are the plain
server's (``parse_body`` / ``render``): same one-line 400s, same JSON. Ray's ``max_batch_size``
counts requests, not rows; ``max_ongoing_requests`` bounds each replica's queue (Ray answers 503
past it).
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from genctl.errors import BackendUnavailable
from genctl.serve.app import ServeConfig


def _ray_serve():
    try:
        import ray
        from ray import serve
    except ImportError:
        raise BackendUnavailable("--ray", got="Ray Serve is not installed", expected="ray[serve] >= 2.9",
                                 fix="pip install 'genctl[ray]'") from None
    return ray, serve


def deployment(bundle: str | Path, *, backend: str = "auto", precision: str = "fp32", config: ServeConfig | None = None,
               replicas: int = 1):
    """A bound Ray Serve application for ``bundle`` (pass it to ``serve.run``)."""
    _, serve = _ray_serve()
    from starlette.responses import JSONResponse

    config = config or ServeConfig()
    bundle = str(Path(bundle).resolve())

    @serve.deployment(name="genctl", num_replicas=replicas, max_ongoing_requests=config.max_queue,
                      ray_actor_options={"num_cpus": 0})
    class GenctlDeployment:
        def __init__(self):
            from genctl.runtime.generator import Generator

            self.gen = Generator.load(bundle, backend=backend, precision=precision)
            self.gen.generate_many([self.gen.request(None, n=1, seed=0)])  # warm-up before traffic

        @serve.batch(max_batch_size=config.max_batch, batch_wait_timeout_s=config.max_wait_ms / 1000)
        async def _generate(self, requests):
            return await asyncio.to_thread(self.gen.generate_many, list(requests))

        async def __call__(self, http_request):
            from genctl.errors import GenctlError
            from genctl.serve.app import parse_body, render

            path = http_request.url.path.rstrip("/")
            if http_request.method == "GET" and path.endswith("/healthz"):
                return JSONResponse({"status": "ok", "family": self.gen.bundle.family,
                                     "backend": self.gen.backend.describe()})
            try:
                body = json.loads(await http_request.body() or b"{}")
                request, fmt = parse_body(self.gen, body, config)
            except (ValueError, RecursionError) as exc:
                return JSONResponse({"error": f"Request body | got invalid JSON ({type(exc).__name__}) | "
                                              "expected a JSON object"}, status_code=400)
            except GenctlError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            try:
                samples = await asyncio.wait_for(self._generate(request), config.timeout_s)
            except asyncio.TimeoutError:  # the same answer as the plain server's
                return JSONResponse({"error": f"Request | got no result within {config.timeout_s:g} s | expected one | "
                                              "fix: retry, ask for fewer rows, or raise --timeout-s"}, status_code=504)
            except GenctlError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(render(self.gen, samples, fmt))

    return GenctlDeployment.bind()


def start(bundle: str | Path, *, backend: str = "auto", precision: str = "fp32", config: ServeConfig | None = None,
          replicas: int = 1, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Start a local Ray instance and Serve with the deployment at ``http://host:port/`` (returns when up)."""
    ray, serve = _ray_serve()
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    serve.start(http_options={"host": host, "port": port})
    app = deployment(bundle, backend=backend, precision=precision, config=config, replicas=replicas)
    serve.run(app, name="genctl", route_prefix="/", blocking=False)


def stop() -> None:
    ray, serve = _ray_serve()
    serve.shutdown()
    ray.shutdown()


class _Terminated(Exception):
    """SIGTERM arrived (a plain ``kill``, a container stop)."""


def _on_sigterm(signum, frame):
    raise _Terminated


def serve_ray(bundle: str | Path, **kwargs) -> None:
    """The CLI's ``--ray``: start, then block until Ctrl-C or SIGTERM, then shut Serve and Ray down.

    SIGTERM is handled like Ctrl-C (installed after Ray started, over Ray's own handler): ``serve.shutdown()`` and
    ``ray.shutdown()`` run before the process exits, instead of Ray's workers dying under it with a native crash dump.
    """
    import signal
    import time

    start(bundle, **kwargs)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop()
