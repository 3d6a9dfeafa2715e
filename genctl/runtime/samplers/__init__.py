"""Sampler registry by manifest ``sampler.kind``."""
from __future__ import annotations

import importlib

from genctl.errors import BundleError
from genctl.runtime.samplers.base import Sampler, Samples

SAMPLERS = {
    "oneshot": "genctl.runtime.samplers.oneshot:OneShotSampler",
    "autoregressive": "genctl.runtime.samplers.autoregressive:AutoregressiveSampler",
    "diffusion": "genctl.runtime.samplers.diffusion:DiffusionSampler",
}


def sampler_class(kind: str) -> type[Sampler]:
    if kind not in SAMPLERS:
        raise BundleError(f"Sampler kind '{kind}'", got="an unknown kind", expected=f"one of {sorted(SAMPLERS)}",
                          fix="upgrade genctl")
    module, cls = SAMPLERS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["SAMPLERS", "Sampler", "Samples", "sampler_class"]
