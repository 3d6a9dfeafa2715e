"""The reference backend: the original PyTorch modules, rebuilt from the bundle's source weights.

``torch-compile`` is the same modules through ``torch.compile`` — a reference a user would try.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable
from genctl.runtime.backends.base import Backend
from genctl.training.checkpoint import load_checkpoint


def load_modules(bundle: Bundle) -> dict[str, torch.nn.Module]:
    """Rebuild the family's model from ``BUNDLE/source`` and return its graph modules by name."""
    from genctl.families import get_family

    config, state = load_checkpoint(bundle.source_dir())
    family = get_family(config["family"])
    model = family.build_model(config)
    model.load_state_dict(state)
    model.eval()
    return {name: g.module.eval() for name, g in family.graphs(model, config).items()}


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, bundle: Bundle, precision: str = "fp32", modules: dict[str, torch.nn.Module] | None = None):
        if precision != "fp32":
            raise BackendUnavailable(f"Precision '{precision}' on backend '{self.name}'", got=precision,
                                     expected="fp32 (the reference runs the original modules)")
        super().__init__(bundle, precision)
        self.modules = modules if modules is not None else load_modules(bundle)

    @torch.inference_mode()
    def _run_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.bundle.graphs[graph]
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in spec.input_names]
        out = self.modules[graph](*args)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {name: t.numpy() for name, t in zip(spec.output_names, out)}


class TorchCompileBackend(TorchBackend):
    """torch.compile(dynamic=True) of the same modules; the first calls pay the compile time."""

    name = "torch-compile"

    def __init__(self, bundle: Bundle, precision: str = "fp32"):
        super().__init__(bundle, precision)
        import torch._inductor.config as inductor_config

        # Inductor's OpenMP CPU kernels measured 20-40x slower than single-threaded ones on the 2-core
        # development machine (39 ms vs 2 ms per cVAE decode at batch 1; 22 vs 16 ms at batch 64).
        inductor_config.cpp.threads = 1
        try:
            self.modules = {k: torch.compile(m, dynamic=True) for k, m in self.modules.items()}
        except Exception as exc:  # no compiler toolchain, unsupported platform
            raise BackendUnavailable("Backend 'torch-compile'", got=f"torch.compile failed ({type(exc).__name__})",
                                     expected="a working torch.compile (inductor + a C++ compiler)") from None
