"""What accelerators are really usable here (without importing torch.cuda or tensorrt eagerly).

Requesting ONNX Runtime's CUDA or TensorRT providers without a GPU prints loud errors, so provider
lists are built from what this probe finds, not from what the wheel was compiled with.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import shutil
import subprocess


@functools.lru_cache(maxsize=None)
def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports (0 when there is no driver or no GPU)."""
    for name in ("libcuda.so.1", "libcuda.so", ctypes.util.find_library("cuda")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


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


def tensorrt_version() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt

        return tensorrt.__version__
    except Exception:  # a broken install is "not usable"
        return None


@functools.lru_cache(maxsize=None)
def _tensorrt_libs_loadable() -> bool:
    for name in ("libnvinfer.so.10", "libnvinfer.so", ctypes.util.find_library("nvinfer")):
        if name:
            try:
                ctypes.CDLL(name)
                return True
            except OSError:
                continue
    return tensorrt_version() is not None


def onnxruntime_providers() -> tuple[list[str], list[str]]:
    """``(compiled_in, usable)`` ONNX Runtime execution providers, best first."""
    import onnxruntime as ort

    compiled = ort.get_available_providers()
    usable = []
    if cuda_device_count() > 0:
        if "TensorrtExecutionProvider" in compiled and _tensorrt_libs_loadable():
            usable.append("TensorrtExecutionProvider")
        if "CUDAExecutionProvider" in compiled:
            usable.append("CUDAExecutionProvider")
    usable.append("CPUExecutionProvider")
    return compiled, usable
