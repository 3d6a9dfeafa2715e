"""Sampler contract: the generation loop, written once for every backend.

All randomness comes from the ``rng`` the Generator seeds and enters graphs as inputs, so the
same seed gives the same samples on torch, ONNX Runtime and TensorRT.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from genctl.bundle import Bundle
from genctl.conditions import ConditionRows, Control
from genctl.runtime.backends.base import Backend


@dataclass
class Samples:
    """What a generation returns: ``data`` (rows*n, ...) in row order, row labels, and extras."""

    data: np.ndarray
    rows: list[str]
    n: int
    kind: str  # "image" | "text"
    texts: list[str] = field(default_factory=list)  # text families: decoded strings
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. tokens generated, steps run


class Sampler:
    kind: ClassVar[str]
    controls: ClassVar[list[Control]] = []
    inputs: ClassVar[tuple[str, ...]] = ()  # sampler inputs beyond conditions (Generator.generate kwargs)

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.section = bundle.sampler

    def sample(self, backend: Backend, rows: ConditionRows, n: int, rng: np.random.Generator,
               controls: dict[str, Any], **inputs: Any) -> Samples:
        raise NotImplementedError

    def check(self, controls: dict[str, Any], **inputs: Any) -> None:
        """Checks that need the model (steps vs training timesteps, prefix vs vocabulary): before any graph runs."""

    def noise(self, spec_input, batch: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        """Standard-normal noise for a ``noise``-role input, drawn from the sampler's seeded rng."""
        shape = spec_input.concrete({"batch": batch})
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype(np.float32)
