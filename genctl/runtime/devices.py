"""What accelerators are really usable here (without importing torch.cuda or tensorrt eagerly).

Requesting ONNX Runtime's CUDA or TensorRT providers without a GPU prints loud errors, so provider
lists are built from what this probe finds, not from what the wheel was compiled with.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib
import importlib.util
import shutil
import subprocess


@functools.lru_cache(maxsize=None)
def _libcuda():
    """The CUDA driver library after a successful ``cuInit``, or None."""
    for name in ("libcuda.so.1", "libcuda.so", ctypes.util.find_library("cuda")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        return lib if lib.cuInit(0) == 0 else None
    return None


@functools.lru_cache(maxsize=None)
def cuda_device_count() -> int:
    """Number of CUDA devices the driver reports (0 when there is no driver or no GPU)."""
    lib, count = _libcuda(), ctypes.c_int(0)
    if lib is None or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


@functools.lru_cache(maxsize=None)
def gpu_compute_capability(device: int = 0) -> str | None:
    """``"8.9"`` for CUDA device ``device`` (from the driver, without torch), or None without a GPU."""
    lib = _libcuda()
    if lib is None or device >= cuda_device_count():
        return None
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76 (cuda.h)
    if lib.cuDeviceGetAttribute(ctypes.byref(major), 75, device) or lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, device):
        return None
    return f"{major.value}.{minor.value}"


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
    from genctl.optimize.flavors import flavor

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
