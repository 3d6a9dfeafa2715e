"""What accelerators are really usable here (without importing torch.cuda or tensorrt eagerly).

Requesting ONNX Runtime's CUDA or TensorRT providers without a GPU prints loud errors, so provider
lists are built from what this probe finds, not from what the wheel was compiled with. The CUDA
driver probe (device count, compute capability) is ``genctl.trt.gpu``, re-exported here.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib
import importlib.util
import shutil
import subprocess

from genctl.trt.flavors import flavor
from genctl.trt.gpu import cuda_device_count, gpu_compute_capability  # noqa: F401 (re-exported)


@functools.lru_cache(maxsize=None)
def gpu_names() -> list[str]:
    if not cuda_device_count() or not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def tensorrt_version(target: str = "tensorrt") -> str | None:
    """Version of the ``tensorrt`` (or ``tensorrt-rtx``) Python module, None when not importable."""
    modules = flavor(target).modules
    if importlib.util.find_spec(modules[-1]) is None:
        return None
    try:
        for name in modules:
            module = importlib.import_module(name)
        return str(module.__version__)
    except Exception:  # a broken install is "not usable"
        return None


@functools.lru_cache(maxsize=None)
def _tensorrt_libs_loadable() -> bool:
    for name in ("libnvinfer.so.11", "libnvinfer.so.10", "libnvinfer.so", ctypes.util.find_library("nvinfer")):
        if name:
            try:
                ctypes.CDLL(name)
                return True
            except OSError:
                continue
    return tensorrt_version() is not None


def optimization_provider(usable: list[str]) -> str:
    """The provider an ``opt`` graph is optimised for here: CUDA where usable, else CPU (the
    TensorRT EP compiles its own engines from whatever graph it gets, so it is not a target)."""
    return "CUDAExecutionProvider" if "CUDAExecutionProvider" in usable else "CPUExecutionProvider"


def _preload_cuda_libraries(ort) -> None:
    """Load CUDA / cuDNN from the nvidia-* pip packages (as torch ships them) before the CUDA provider
    needs them: the provider library finds ``libcublasLt.so.13`` / ``libcudnn.so.9`` only on the loader's
    path, which a pip-installed CUDA is not on unless torch was imported first. Once per process."""
    global _PRELOADED
    if _PRELOADED or not hasattr(ort, "preload_dlls"):  # onnxruntime >= 1.21
        return
    _PRELOADED = True
    try:
        ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
    except Exception:  # a system-wide CUDA is on the path instead; the session then says what is missing
        pass


_PRELOADED = False


def onnxruntime_providers() -> tuple[list[str], list[str]]:
    """``(compiled_in, usable)`` ONNX Runtime execution providers, best first."""
    import onnxruntime as ort

    compiled = ort.get_available_providers()
    usable = []
    if cuda_device_count() > 0:
        _preload_cuda_libraries(ort)
        if "TensorrtExecutionProvider" in compiled and _tensorrt_libs_loadable():
            usable.append("TensorrtExecutionProvider")
        if "CUDAExecutionProvider" in compiled:
            usable.append("CUDAExecutionProvider")
    usable.append("CPUExecutionProvider")
    return compiled, usable
