"""GraphSpec: the contract of one exported graph (names, dtypes, symbolic dims, roles).

Backends check every feed against it before running, so a wrong feed is a one-line error
(``Input 'label' | got dtype float32 | expected int64``) instead of a runtime's stack trace.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import Mapping

import numpy as np

from genctl.errors import GenctlError


@functools.lru_cache(maxsize=None)
def _dtype(name: str) -> np.dtype:
    return np.dtype(name)


ROLES = ("noise", "condition", "state", "control", "data", "output")


@dataclass
class TensorSpec:
    """One input or output: ``shape`` mixes ints and symbolic names such as ``"batch"``."""

    name: str
    dtype: str  # numpy dtype name: float32, int64, float16
    shape: list[int | str]
    role: str = "data"
    high: int | None = None  # integer inputs: exclusive upper bound of valid values (classes, vocab)

    def concrete(self, dims: Mapping[str, int]) -> tuple[int, ...]:
        """The shape with symbolic dims replaced from ``dims`` (a KeyError names a missing dim)."""
        return tuple(d if isinstance(d, int) else int(dims[d]) for d in self.shape)


@dataclass
class GraphSpec:
    """A graph's I/O contract plus, once exported, its file and sha256 inside the bundle.

    ``feeds_back`` maps an output name to the input it becomes on the next step of a loop
    (RNN hidden state, KV cache, diffusion latent).
    """

    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    file: str = ""
    sha256: str = ""
    feeds_back: dict[str, str] = field(default_factory=dict)
    doc: str = ""

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def symbolic_dims(self) -> list[str]:
        names: list[str] = []
        for t in self.inputs + self.outputs:
            names += [d for d in t.shape if isinstance(d, str) and d not in names]
        return names

    def check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Raise a GenctlError naming the first feed whose name, dtype or rank/shape is wrong.

        Feeds are numpy arrays or, for device-resident backends, torch tensors (dtype ``torch.int64``
        matches ``int64``).
        """
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise GenctlError(f"Graph '{self.name}' input '{missing[0]}'", got="no value",
                              expected=f"feeds for {self.input_names}")
        extra = sorted(set(feeds) - set(self.input_names))
        if extra:
            raise GenctlError(f"Graph '{self.name}' input '{extra[0]}'", got="an unknown input",
                              expected=f"one of {self.input_names}")
        bound: dict[str, int] = {}
        for spec in self.inputs:
            self._check_one(spec, feeds[spec.name], bound)

    def _check_one(self, spec: TensorSpec, value: np.ndarray, bound: dict[str, int]) -> None:
        subject = f"Input '{spec.name}' of graph '{self.name}'"
        if value.dtype != _dtype(spec.dtype) and str(value.dtype).removeprefix("torch.") != spec.dtype:
            raise GenctlError(subject, got=f"dtype {value.dtype}", expected=spec.dtype)
        if value.ndim != len(spec.shape):
            raise GenctlError(subject, got=f"shape {tuple(value.shape)}", expected=f"rank {len(spec.shape)} {spec.shape}")
        for axis, (want, have) in enumerate(zip(spec.shape, value.shape)):
            if isinstance(want, int) and want != have:
                raise GenctlError(subject, got=f"shape {tuple(value.shape)}", expected=f"{spec.shape} (axis {axis} = {want})")
            if isinstance(want, str):
                if bound.setdefault(want, have) != have:
                    raise GenctlError(subject, got=f"{want}={have}", expected=f"{want}={bound[want]} as in the other inputs")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "GraphSpec":
        data = dict(data)
        data["inputs"] = [TensorSpec(**t) for t in data["inputs"]]
        data["outputs"] = [TensorSpec(**t) for t in data["outputs"]]
        return cls(**data)
