"""CUDA devices as the driver reports them (``libcuda`` through ctypes, no torch, no TensorRT).

The compute capability decides which engines may run here (TensorRT-RTX engines are built for a
list of them) and what ``--compute-capability current`` means, so the builder, the backends and
``genctl doctor`` all read it from here.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


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
