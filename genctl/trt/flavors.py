"""TensorRT and TensorRT-RTX: one builder and one backend over two modules whose APIs match.

Everything that differs between the two lives in :data:`FLAVORS`, one row each:

============== ====================== =================================================
               ``tensorrt``           ``tensorrt-rtx``
============== ====================== =================================================
import         ``tensorrt``           ``tensorrt_rtx_libs`` (loads the .so), then
                                      ``tensorrt_rtx_bindings``
builds on      the GPU that runs it   any machine, no GPU needed (ahead of time)
engine bound   that GPU (name + CC)   a list of compute capabilities (``--compute-capability``)
timing cache   yes (per GPU)          no (its timing-cache calls are no-ops)
============== ====================== =================================================

Both build *strongly typed* networks: TensorRT 11 removed ``BuilderFlag.FP16`` and TensorRT-RTX
never had it, so an fp16 engine is built from the fp16 ONNX variant (``genctl build --target
onnxruntime --precision fp16``) and the network's own types decide each layer's precision.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from genctl.errors import BackendUnavailable, GenctlError


@dataclass(frozen=True)
class Flavor:
    """What differs between TensorRT and TensorRT-RTX (see the module docstring's table)."""

    target: str  # the --target / --backend name
    label: str  # for messages
    modules: tuple[str, ...]  # imported in order; the last one is the API
    pip: str  # what to install
    min_major: int  # oldest supported major version of the API module
    capabilities: tuple[str, ...] | None  # compute capabilities it can target; None = the build GPU
    timing_cache: bool
    other_backend: str  # what to use where this one cannot run

    def load(self):
        """The API module, or a one-line BackendUnavailable naming the package to install."""
        try:
            for name in self.modules:
                trt = importlib.import_module(name)
        except ImportError:
            raise BackendUnavailable(f"Target '{self.target}'", got=f"the {self.modules[-1]} package is not installed",
                                     expected=f"{self.pip}", fix=f"pip install '{self.pip}'") from None
        major = int(str(trt.__version__).split(".")[0])
        if major < self.min_major:
            raise BackendUnavailable(f"Target '{self.target}'", got=f"{self.modules[-1]} {trt.__version__}",
                                     expected=self.pip, fix=f"pip install -U '{self.pip}'")
        return trt

    @property
    def aot(self) -> bool:
        """Builds ahead of time for a list of compute capabilities (no GPU needed to build)."""
        return self.capabilities is not None


FLAVORS = {
    "tensorrt": Flavor(target="tensorrt", label="TensorRT", modules=("tensorrt",), pip="tensorrt>=10",
                       min_major=10, capabilities=None, timing_cache=True, other_backend="onnxruntime"),
    "tensorrt-rtx": Flavor(target="tensorrt-rtx", label="TensorRT-RTX", modules=("tensorrt_rtx_libs", "tensorrt_rtx_bindings"),
                           pip="genctl[tensorrt-rtx]", min_major=1, capabilities=("8.0", "8.6", "8.9", "12.0", "12.1"),
                           timing_cache=False, other_backend="tensorrt (TensorRT engines) or onnxruntime"),
}
DEFAULT_RTX_CAPABILITIES = ("8.0", "8.6", "8.9", "12.0")  # A100, A10/RTX 30, L4/L40/RTX 40, RTX 50/RTX PRO Blackwell


def flavor(target: str) -> Flavor:
    return FLAVORS[target]


def parse_capabilities(text: str | None, fl: Flavor, gpu_capability: str | None) -> tuple[str, ...]:
    """``--compute-capability``: ``"8.6,8.9"`` or ``"current"`` → sorted, checked capabilities.

    ``gpu_capability`` is this machine's GPU (``None`` without one), used for ``current``.
    """
    if not fl.aot:
        if text:
            raise GenctlError("--compute-capability", got=f"target '{fl.target}'", expected="target tensorrt-rtx",
                              fix="TensorRT engines are bound to the GPU that builds them: leave the option out")
        return ()
    if not text:
        return DEFAULT_RTX_CAPABILITIES
    if text.strip() == "current":
        if gpu_capability is None:
            raise GenctlError("--compute-capability current", got="no CUDA GPU on this machine",
                              expected="a GPU to read the compute capability from",
                              fix=f"name them instead, e.g. --compute-capability {','.join(DEFAULT_RTX_CAPABILITIES)}")
        items = [gpu_capability]
    else:
        items = [item.strip() for item in text.split(",") if item.strip()]
    bad = [c for c in items if c not in fl.capabilities]
    if bad or not items:
        raise GenctlError(f"--compute-capability '{text}'", got=f"unsupported {', '.join(bad) or 'nothing'}",
                          expected=f"a comma-separated list of {', '.join(fl.capabilities)} or 'current'")
    return tuple(sorted(set(items), key=lambda c: tuple(int(p) for p in c.split("."))))


def capability_enum(trt, capability: str):
    """``"8.6"`` → ``trt.ComputeCapability.SM86``."""
    return getattr(trt.ComputeCapability, "SM" + capability.replace(".", ""))


def refuse_gpu(fl: Flavor, gpu_capability: str | None, gpu_name: str = "") -> None:
    """Raise the one-line refusal when this machine's GPU cannot run ``fl``'s engines."""
    if not fl.aot:
        return
    supported = ", ".join(fl.capabilities)
    if gpu_capability is None:
        raise BackendUnavailable(f"Backend '{fl.target}'", got="no CUDA GPU (compute capability: none)",
                                 expected=f"a GPU of compute capability {supported}",
                                 fix=f"use --backend {fl.other_backend}")
    if gpu_capability not in fl.capabilities:
        raise BackendUnavailable(f"Backend '{fl.target}'", got=f"a GPU of compute capability {gpu_capability} ({gpu_name})",
                                 expected=f"compute capability {supported}", fix=f"use --backend {fl.other_backend}")
