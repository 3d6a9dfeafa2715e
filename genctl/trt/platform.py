"""What both the engine builder and the engine backend need from a TensorRT module at hand.

- :func:`current_platform` — module version, GPU name and compute capability of device 0: what an
  engine built here is bound to (TensorRT) and what a loaded engine must match. TensorRT-RTX on a
  GPU outside its compute capabilities, or without a GPU, is refused in one line.
- :func:`make_logger` — an ``ILogger`` that keeps errors for one-line messages and sends warnings
  to ``logging``; it also registers the plugin library once per module and process.
- :func:`io_mismatch` — how a network's or engine's I/O tensor names differ from the GraphSpec.
"""
from __future__ import annotations

import logging

from genctl.errors import BackendUnavailable
from genctl.trt.cache import Platform
from genctl.trt.flavors import flavor, refuse_gpu
from genctl.trt.gpu import gpu_compute_capability

log = logging.getLogger("genctl.tensorrt")
_PLUGINS_READY: set[str] = set()  # modules whose plugin library is registered


def current_platform(target: str = "tensorrt") -> Platform:
    """Module version, GPU name and compute capability of device 0 (what runs the engines).

    For TensorRT-RTX a GPU outside its compute capabilities is refused here, in one line.
    """
    fl = flavor(target)
    trt = fl.load()
    capability = gpu_compute_capability()
    name = gpu_name() if capability else ""
    refuse_gpu(fl, capability, name)
    import torch

    if capability is None or not torch.cuda.is_available():
        raise BackendUnavailable(f"Target '{target}'", got="no CUDA GPU visible to torch",
                                 expected="an NVIDIA GPU with its driver and a CUDA build of torch",
                                 fix="run on a GPU machine, or use --target onnxruntime")
    return Platform(tensorrt=str(trt.__version__), gpu=name, compute_capability=capability, runtime=target)


def gpu_name() -> str:
    """torch's name for CUDA device 0 ("NVIDIA H100 80GB HBM3"), the ``gpu`` of a Platform."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "unknown GPU"


def make_logger(trt):
    """A TensorRT logger that keeps errors (for the one-line message) and sends the rest to logging."""

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(str(msg))
            elif severity == trt.ILogger.WARNING:
                log.info("%s", msg)

    logger = Logger()
    init_plugins = getattr(trt, "init_libnvinfer_plugins", None)
    if init_plugins is not None and trt.__name__ not in _PLUGINS_READY:  # once per module and process
        if init_plugins(logger, ""):
            _PLUGINS_READY.add(trt.__name__)
        else:
            log.info("init_libnvinfer_plugins failed; graphs that need a plugin will not parse")
    return logger


def io_mismatch(spec, inputs: list[str], outputs: list[str]) -> str | None:
    """How an engine's (or network's) I/O tensor names differ from the GraphSpec, or None."""
    diffs = []
    for what, got, want in (("inputs", inputs, spec.input_names), ("outputs", outputs, spec.output_names)):
        if sorted(got) != sorted(want):
            diffs.append(f"{what} {sorted(got)} (GraphSpec {sorted(want)})")
    return "; ".join(diffs) or None
