"""The Triton Inference Server that the ``nvidia-pytriton`` wheel bundles, started on a model repository.

The wheel (0.7.0: Triton 2.51, Linux x86_64) ships the ``tritonserver`` binary, the Python backend and
one Python-backend stub per Python minor version. To run Python-backend models with *this* interpreter's
packages, ``TritonServer``:

- composes a backend directory: the Python backend's files plus the stub for ``sys.version_info``'s minor;
- puts the running interpreter's ``LIBDIR`` first in ``LD_LIBRARY_PATH``, then the wheel's
  ``nvidia_pytriton.libs``: the stub links ``libpython3.X.so.1.0`` through the loader's search path, and
  a system libpython of another patch release under this interpreter's standard library fails every model
  (``'_thread.RLock' object has no attribute '_recursion_count'`` with pyenv 3.11.7 over Debian's 3.11.2);
- passes this environment's ``sys.path`` (genctl's own folder first) as ``PYTHONPATH``. The stub's
  embedded interpreter ignores ``PYTHONPATH``, so the model files genctl writes read it themselves
  (``genctl/serve/triton_backend``);
- gives the stub numpy 1.x when this environment has numpy 2: the 2.51 stub's pybind11 predates numpy 2
  and misreads its arrays (inputs arrive with wrong strides, outputs with size 0, a BYTES input kills the
  stub). ``stub_site()`` is a folder holding ``numpy<2`` (``pip install --target``), put first on its path;
  ONNX Runtime and genctl run on numpy 1.26 as well;
- binds loopback, free ports unless given, logs to a file unless ``verbose``, waits (bounded) for
  ``/v2/health/ready`` and stops the whole process group (server + stubs) on ``stop()``.

Only this module knows where the binary lives; the CLI (``genctl serve --triton``), the tests and the
benchmark all start Triton through it.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import genctl
from genctl.errors import GenctlError

WHEEL = "nvidia-pytriton==0.7.0"
INSTALL = f"pip install --no-deps '{WHEEL}' (Linux x86_64; it bundles tritonserver 2.51)"
STUB_NUMPY = "numpy==1.26.4"


@dataclass(frozen=True)
class Installation:
    """Paths inside the installed ``nvidia-pytriton`` wheel."""

    root: Path  # site-packages/pytriton/tritonserver
    libs: Path  # site-packages/nvidia_pytriton.libs

    @property
    def binary(self) -> Path:
        return self.root / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "backends" / "python"

    @property
    def stub(self) -> Path:
        minor = f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "python_backend_stubs" / minor / "triton_python_backend_stub"


def find_installation() -> Installation:
    """The bundled ``tritonserver``, or a one-line ``GenctlError`` saying what to install."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise GenctlError("Triton Inference Server (nvidia-pytriton wheel)", got=f"{platform.system()} {platform.machine()}",
                          expected="Linux x86_64, the only platform the wheel is built for",
                          fix="serve the repository of 'genctl export-triton' on a Triton installation")
    spec = importlib.util.find_spec("pytriton")  # finds the package without importing it (no pytriton code runs)
    if spec is None or not spec.submodule_search_locations:
        raise GenctlError("Triton Inference Server", got="the nvidia-pytriton wheel is not installed",
                          expected="its bundled tritonserver", fix=INSTALL)
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    found = Installation(root=root, libs=root.parent.parent / "nvidia_pytriton.libs")
    for path, what in ((found.binary, "the tritonserver binary"), (found.python_backend / "libtriton_python.so", "the Python backend"),
                       (found.stub, f"a Python-backend stub for Python {sys.version_info.major}.{sys.version_info.minor}")):
        if not path.is_file():
            raise GenctlError(f"Triton file '{path}'", got="missing", expected=what,
                              fix=f"reinstall the wheel ({INSTALL}); its stubs cover Python 3.8-3.13")
    return found


def stub_site() -> Path | None:
    """The folder with ``numpy<2`` for the Python-backend stub (``None``: this environment's numpy is 1.x).

    ``$GENCTL_TRITON_SITE``, else ``~/.cache/genctl/triton-stub-py3.X``; a one-line error with the
    ``pip install --target`` command when it is missing."""
    import numpy

    if int(numpy.__version__.split(".")[0]) < 2:
        return None
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    site = Path(os.environ.get("GENCTL_TRITON_SITE") or Path.home() / ".cache" / "genctl" / f"triton-stub-py{minor}")
    version = next(iter(site.glob("numpy-*.dist-info")), None)
    if version is None or not version.name.startswith("numpy-1."):
        raise GenctlError("numpy for Triton's Python-backend stub", got=f"numpy {numpy.__version__} here and none < 2 in {site}",
                          expected="numpy<2 (the stub of tritonserver 2.51 misreads numpy 2 arrays)",
                          fix=f"pip install --no-deps --target {site} '{STUB_NUMPY}' (or set GENCTL_TRITON_SITE)")
    return site


def unavailable_reason() -> str | None:
    """Why the bundled server cannot run here (one line), or ``None`` when it can."""
    try:
        find_installation()
        stub_site()
    except GenctlError as exc:
        return str(exc)
    return None


def compose_backends(inst: Installation, into: Path) -> Path:
    """A backend directory ``into/python/``: the Python backend's files + this Python's stub (links)."""
    python = into / "python"
    python.mkdir(parents=True, exist_ok=True)
    for src in (inst.python_backend / "libtriton_python.so", inst.python_backend / "triton_python_backend_utils.py", inst.stub):
        (python / src.name).unlink(missing_ok=True)
        (python / src.name).symlink_to(src)
    return into


def server_env(inst: Installation, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of ``tritonserver``: this interpreter's libpython first, then the wheel's libraries;
    the stub's numpy (``stub_site``) and this environment's import path as ``PYTHONPATH`` (read by genctl's
    model files)."""
    env = dict(os.environ if base is None else base)
    site = stub_site()
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = _join([libdir, str(inst.libs)] + env.get("LD_LIBRARY_PATH", "").split(os.pathsep))
    here = str(Path(genctl.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = _join([str(site) if site else "", here] + [p for p in sys.path if p and Path(p).is_dir()] + env.get("PYTHONPATH", "").split(os.pathsep))
    return env


def _join(paths: list[str]) -> str:
    return os.pathsep.join(dict.fromkeys(p for p in paths if p))


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies, even by SIGKILL (Linux
    ``PR_SET_PDEATHSIG``), so a killed ``genctl serve --triton`` or test never leaves a server running."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(name: str, port: int) -> int:
    if not 0 <= port <= 65535:
        raise GenctlError(name, got=port, expected="a TCP port in 0..65535 (0: a free one)")
    return port


class TritonServer:
    """``with TritonServer([repo], load=["cvae_generate"]) as t: t.http_url`` — started, ready, stopped.

    ``load``: models to load (explicit model control); ``None`` loads the whole repository. Ports 0 pick
    free ones. ``timeout_s`` bounds the start (models loaded); ``stop()`` bounds the shutdown.
    """

    def __init__(self, repositories: list[str | Path], *, load: list[str] | None = None, host: str = "127.0.0.1",
                 http_port: int = 0, grpc_port: int = 0, metrics_port: int = 0, timeout_s: float = 120.0,
                 verbose: bool = False, log_file: str | Path | None = None, log_verbose: int = 0):
        self.inst = find_installation()
        self.log_verbose = log_verbose
        stub_site()  # before anything starts: a missing numpy<2 is one line, not a stub crash
        self.repositories = [Path(r).resolve() for r in repositories]
        self.load, self.host, self.timeout_s, self.verbose = load, host, timeout_s, verbose
        self.ports: dict[str, int] = {}
        for k, p in (("http", http_port), ("grpc", grpc_port), ("metrics", metrics_port)):
            port = check_port(f"--{k}-port", p)
            if port and port in self.ports.values():
                raise GenctlError(f"--{k}-port", got=port, expected="a port the other Triton endpoints do not use")
            while not port or port in self.ports.values():  # 0: a free one, distinct from the others
                port = free_port(host)
            self.ports[k] = port
        self._work = Path(tempfile.mkdtemp(prefix="genctl-triton-"))
        self.log_file = Path(log_file) if log_file else self._work / "tritonserver.log"
        self.process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports['metrics']}/metrics"

    def command(self) -> list[str]:
        cmd = [str(self.inst.binary), f"--backend-directory={compose_backends(self.inst, self._work / 'backends')}",
               f"--http-address={self.host}", f"--http-port={self.ports['http']}",
               f"--grpc-address={self.host}", f"--grpc-port={self.ports['grpc']}",
               f"--metrics-address={self.host}", f"--metrics-port={self.ports['metrics']}",
               "--allow-gpu-metrics=false", "--exit-timeout-secs=10"]
        cmd += [f"--model-repository={r}" for r in self.repositories]
        if self.load is not None:
            cmd += ["--model-control-mode=explicit"] + [f"--load-model={m}" for m in self.load]
        if not self.verbose:
            cmd.append(f"--log-file={self.log_file}")
        if self.log_verbose:
            cmd.append(f"--log-verbose={self.log_verbose}")
        return cmd

    def start(self) -> "TritonServer":
        """Start ``tritonserver`` and wait until it is ready; a one-line ``GenctlError`` if it is not in time."""
        out = None if self.verbose else open(self._work / "stdout.log", "wb")  # noqa: SIM115 (closed in stop)
        self._out = out
        self.process = subprocess.Popen(self.command(), env=server_env(self.inst), stdout=out, stderr=subprocess.STDOUT if out else None,
                                        stdin=subprocess.DEVNULL, start_new_session=True,  # its own group: stubs die with it
                                        preexec_fn=_die_with_parent)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise GenctlError("Triton Inference Server", got=f"exit code {code}: {self.failure()}",
                                  expected="every model loaded", fix=f"see {self.log_file}")
            if self.ready():
                return
            time.sleep(0.1)
        raise GenctlError("Triton Inference Server", got=f"not ready within {self.timeout_s:g} s ({self.failure()})",
                          expected="every model loaded", fix=f"see {self.log_file}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def failure(self) -> str:
        """The first model-load error in Triton's log (one line), or its last line."""
        text = ""
        for path in (self.log_file, self._work / "stdout.log"):
            if path.is_file():
                text += path.read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        for ln in lines:
            if "failed to load" in ln or "Failed to initialize Python stub" in ln:
                return ln.split("] ", 1)[-1].split("\\n")[0].strip('"')[:400]
        return lines[-1][:400] if lines else "no log"

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGINT (Triton unloads and exits), then SIGKILL to the process group after ``timeout_s``."""
        proc, self.process = self.process, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group we started: stragglers (stubs), if any
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(timeout=10)
        out = getattr(self, "_out", None)
        if out is not None:
            out.close()
            self._out = None
        import shutil

        shutil.rmtree(self._work / "backends", ignore_errors=True)
        if self._work not in self.log_file.parents:  # the log lives elsewhere: nothing here worth keeping
            shutil.rmtree(self._work, ignore_errors=True)

    def wait(self) -> int:
        """Block until the server exits (the CLI's foreground mode); its exit code."""
        return self.process.wait() if self.process else 0

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_bundle(bundle, *, host: str = "127.0.0.1", http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002,
                 max_batch: int = 64, max_wait_us: int = 5000, max_queue: int = 256, instances: int = 2, max_rows: int = 1024,
                 precision: str = "fp32", verbose: bool = False, timeout_s: float = 300.0, on_ready=None) -> int:
    """``genctl serve BUNDLE --triton``: the bundle's generate model (exported to a temp repository) on the bundled
    ``tritonserver`` in the foreground, until SIGINT / SIGTERM (then a clean stop) or the server exits.

    ``on_ready(server, model_name)`` is called once it answers. Returns the server's exit code (0 after a stop).
    Two instances by default: with one, Triton 2.51's dynamic batcher was seen to idle up to its 500 ms default
    wait after the busy instance freed up (p99 ~510 ms; BENCHMARKS.md).
    """
    import shutil

    from genctl.bundle import Bundle
    from genctl.serve.triton import check_limits, export_triton, generate_model_name

    check_limits(max_batch=max_batch, max_wait_ms=max_wait_us / 1000, max_queue=max_queue, instances=instances, max_rows=max_rows)
    for name, port in (("--http-port", http_port), ("--grpc-port", grpc_port), ("--metrics-port", metrics_port)):
        check_port(name, port)
    find_installation()
    stub_site()
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    work = Path(tempfile.mkdtemp(prefix="genctl-triton-repo-"))
    try:
        export_triton(bundle, work / "repo", max_batch=max_batch, max_wait_ms=max_wait_us / 1000, max_queue=max_queue,
                      instances=instances, max_rows=max_rows, precision=precision, graphs=False)
        name = generate_model_name(bundle)
        server = TritonServer([work / "repo"], load=[name], host=host, http_port=http_port, grpc_port=grpc_port,
                              metrics_port=metrics_port, timeout_s=timeout_s, verbose=verbose)
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.start()
            if on_ready:
                on_ready(server, name)
            code = server.wait()
            if code != 0:
                raise GenctlError("Triton Inference Server", got=f"exit code {code}: {server.failure()}", expected="a running server",
                                  fix=f"see {server.log_file}")
            return code
        except KeyboardInterrupt:
            return 0
        finally:
            server.stop()
            signal.signal(signal.SIGTERM, previous)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _interrupt(signum, frame):  # SIGTERM -> the same clean stop as Ctrl-C
    raise KeyboardInterrupt
