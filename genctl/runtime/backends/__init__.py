"""Backend registry with lazy imports: ``import genctl`` works without tensorrt (or even ORT)."""
from __future__ import annotations

import importlib

from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable, GenctlError
from genctl.runtime.backends.base import Backend

BACKENDS = {
    "torch": "genctl.runtime.backends.torch:TorchBackend",
    "torch-compile": "genctl.runtime.backends.torch:TorchCompileBackend",
    "onnxruntime": "genctl.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    "tensorrt": "genctl.runtime.backends.tensorrt:TensorRTBackend",
    "tensorrt-rtx": "genctl.runtime.backends.tensorrt:TensorRTRTXBackend",
}


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise _unknown_backend(name)
    module, cls = BACKENDS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise BackendUnavailable(f"Backend '{name}'", got=f"missing package ({exc.name})",
                                 expected="its package installed", fix=f"pip install {exc.name}") from None


def auto_backend(bundle: Bundle, precision: str = "fp32") -> str:
    """The fastest backend that can run this bundle here: gated TensorRT (then TensorRT-RTX) engines
    built for this GPU and precision, else ONNX Runtime, else torch. TensorRT-RTX is never picked
    without a GPU of one of its compute capabilities (``current_platform`` refuses it)."""
    from genctl.runtime.devices import cuda_device_count, tensorrt_version

    for target in ("tensorrt", "tensorrt-rtx"):
        if not (bundle.manifest.get("engines") and cuda_device_count() and tensorrt_version(target)):
            continue
        try:
            from genctl.runtime.backends.tensorrt import select_record
            from genctl.trt.platform import current_platform

            if select_record(bundle, precision, current_platform(target)).get("status") == "passed":
                return target
        except (GenctlError, ImportError):
            pass  # no engine for this precision/GPU/module: fall back rather than fail
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "torch"
    return "onnxruntime"


# ``NAME+OPTION``: variants of one backend that bench can put side by side.
BACKEND_OPTIONS = {
    "torch": {"cpu": {"device": "cpu"}, "cuda": {"device": "cuda"}},
    "torch-compile": {"cpu": {"device": "cpu"}, "cuda": {"device": "cuda"}},
    "onnxruntime": {"iobinding": {"io_binding": True}, "noiobinding": {"io_binding": False}, "cudagraphs": {"cuda_graphs": True},
                    "nospin": {"spin": False}, "graphpick": {"graph_pick": True},
                    "cpu": {"providers": ["CPUExecutionProvider"]}},
    "tensorrt": {"nocudagraphs": {"cuda_graphs": False}},
    "tensorrt-rtx": {"nocudagraphs": {"cuda_graphs": False}},
}


def backend_options(name: str, options: list[str]) -> dict:
    """Constructor arguments for ``NAME+OPTION...``; a one-line error for an option the backend lacks."""
    known = BACKEND_OPTIONS.get(name, {})
    kwargs: dict = {}
    for option in options:
        if option not in known:
            raise GenctlError(f"Backend option '+{option}' of '{name}'", got="an unknown option",
                              expected=f"one of {['+' + k for k in known]}" if known else "no options (this backend has none)")
        kwargs.update(known[option])
    return kwargs


def check_backend_name(name: str) -> tuple[str, list[str]]:
    """Split ``NAME[+OPTION...]`` and check it against the registries without importing the backend
    (a missing package is ``open_backend``'s error, on the machine that runs it). ``auto``'s options
    are checked once a bundle picks the backend; here only that some backend has each of them."""
    base, *options = name.split("+")
    if base == "auto":
        known = {option for table in BACKEND_OPTIONS.values() for option in table}
        for option in options:
            if option not in known:
                raise GenctlError(f"Backend option '+{option}' of 'auto'", got="an unknown option",
                                  expected=f"one of {['+' + k for k in sorted(known)]}")
    elif base not in BACKENDS:
        raise _unknown_backend(base)
    else:
        backend_options(base, options)
    return base, options


def _unknown_backend(name: str) -> GenctlError:
    return GenctlError(f"Backend '{name}'", got="an unknown name", expected=f"one of {sorted(BACKENDS) + ['auto']}")


def open_backend(bundle: Bundle, name: str = "auto", precision: str = "fp32") -> Backend:
    """Open ``name`` (``auto``, ``onnxruntime``, ``onnxruntime+iobinding``, ``tensorrt+nocudagraphs``…)."""
    base, options = check_backend_name(name)  # the command line runs the same check while it parses
    base = auto_backend(bundle, precision) if base == "auto" else base
    cls = backend_class(base)
    kwargs = backend_options(base, options)
    if precision not in cls.precisions:
        raise GenctlError(f"Precision '{precision}' on backend '{base}'", got=precision, expected=f"one of {list(cls.precisions)}")
    return cls(bundle, precision, **kwargs)


__all__ = ["BACKENDS", "BACKEND_OPTIONS", "Backend", "auto_backend", "backend_class", "backend_options", "check_backend_name",
           "open_backend"]
