"""The reference backend: the original PyTorch modules, rebuilt from the bundle's source weights.

``torch-compile`` is the same modules through ``torch.compile`` — a reference a user would try.
Both run on the GPU where torch sees one (``torch+cpu`` / ``torch+cuda`` choose), so on a GPU box
"vs torch" compares like with like: on CUDA, loop state stays on the device (``TorchValues``) and
``torch-compile`` uses ``mode="reduce-overhead"`` (CUDA graphs), as a user tuning torch would.
fp32 means fp32 on the GPU too: TF32 is switched off for these modules' matmuls and convolutions.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from genctl.bundle import Bundle
from genctl.checkpoint import load_checkpoint
from genctl.errors import BackendUnavailable
from genctl.runtime.backends.base import Backend, TorchValues


def load_modules(bundle: Bundle) -> dict[str, torch.nn.Module]:
    """Rebuild the family's model from ``BUNDLE/source`` and return its graph modules by name."""
    from genctl.families import get_family

    config, state = load_checkpoint(bundle.source_dir())
    family = get_family(config["family"])
    model = family.build_model(config)
    model.load_state_dict(state)
    model.eval()
    return {name: g.module.eval() for name, g in family.graphs(model, config).items()}


def pick_device(name: str, device: str | None) -> str:
    """``None`` = CUDA where torch sees a GPU, else CPU; an explicit ``cuda`` without one is refused."""
    cuda = torch.cuda.is_available()
    if device is None:
        return "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise BackendUnavailable(f"Backend '{name}+cuda'", got="no CUDA GPU visible to torch",
                                 expected="an NVIDIA GPU and a CUDA build of torch", fix=f"use '{name}' (CPU here)")
    return device


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, bundle: Bundle, precision: str = "fp32", modules: dict[str, torch.nn.Module] | None = None,
                 device: str | None = None):
        if precision != "fp32":
            raise BackendUnavailable(f"Precision '{precision}' on backend '{self.name}'", got=precision,
                                     expected="fp32 (the reference runs the original modules)")
        super().__init__(bundle, precision)
        self.device = pick_device(self.name, device)
        modules = modules if modules is not None else load_modules(bundle)
        if self.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = False  # fp32 is fp32, as for the ORT CUDA EP (use_tf32=0)
            torch.backends.cudnn.allow_tf32 = False
            modules = {k: m.to(self.device) for k, m in modules.items()}
            self.values = TorchValues("cuda")  # loop state stays on the GPU between steps
        self.modules = modules

    def _call(self, graph: str, args: list) -> tuple:
        out = self.modules[graph](*args)
        return out if isinstance(out, (tuple, list)) else (out,)

    @torch.inference_mode()
    def _run_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.bundle.graphs[graph]
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name])).to(self.device) for name in spec.input_names]
        return {name: t.cpu().numpy() for name, t in zip(spec.output_names, self._call(graph, args))}

    @torch.inference_mode()
    def _run_values_impl(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        spec = self.bundle.graphs[graph]
        return dict(zip(spec.output_names, self._call(graph, [feeds[name] for name in spec.input_names])))

    def describe(self) -> str:
        return f"{self.name}[{self.device}]"


class TorchCompileBackend(TorchBackend):
    """torch.compile of the same modules; the first calls pay the compile time.

    CPU: ``dynamic=True`` with single-threaded inductor kernels (measured faster here). CUDA:
    ``mode="reduce-overhead"`` — CUDA graphs per shape, the launch-bound small models' best torch
    setting; its outputs live in graph-owned memory that the next replay overwrites, so they are
    cloned before the loop keeps them.
    """

    name = "torch-compile"

    def __init__(self, bundle: Bundle, precision: str = "fp32", device: str | None = None):
        super().__init__(bundle, precision, device=device)
        import torch._inductor.config as inductor_config

        if self.device == "cpu":
            # Inductor's OpenMP CPU kernels measured 20-40x slower than single-threaded ones on the 2-core
            # development machine (39 ms vs 2 ms per cVAE decode at batch 1; 22 vs 16 ms at batch 64).
            inductor_config.cpp.threads = 1
        kwargs = {"mode": "reduce-overhead"} if self.device == "cuda" else {"dynamic": True}
        try:
            self.modules = {k: torch.compile(m, **kwargs) for k, m in self.modules.items()}
        except Exception as exc:  # no compiler toolchain, unsupported platform
            raise BackendUnavailable("Backend 'torch-compile'", got=f"torch.compile failed ({type(exc).__name__})",
                                     expected="a working torch.compile (inductor + a C++ compiler)") from None

    def _call(self, graph: str, args: list) -> tuple:
        if self.device != "cuda":
            return super()._call(graph, args)
        torch.compiler.cudagraph_mark_step_begin()  # a new step: earlier replays' outputs are ours now
        return tuple(t.clone() for t in super()._call(graph, args))
