"""Backend: runs one bundle's graphs by name and knows nothing of sampling.

Public ``run()`` validates feeds against the GraphSpec and times the call; ``_run_impl()`` does
the work (Polygraphy's runner pattern). ``compute_seconds`` accumulates the time spent inside
the runtime's own calls, so bench can report the share of overhead around it.

Loops (diffusion steps, autoregressive decoding) use the *value* API instead, so their state can
stay where the backend computes: ``put`` a host array, ``run_values`` on values, feed outputs back
as the next step's inputs, ``take_rows`` to drop finished sequences, and ``get`` only what the
host needs (the final sample, each step's logits). Host backends use numpy arrays as values, so
the same sampler code runs everywhere; device-resident backends (``TorchValues``) use torch
tensors on their device and never copy a fed-back state through the host.
"""
from __future__ import annotations

import time
from typing import Any, ClassVar, Mapping

import numpy as np

from genctl.bundle import Bundle


class Backend:
    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    values: "TorchValues | None" = None  # set by device-resident backends; None = numpy values

    def __init__(self, bundle: Bundle, precision: str = "fp32"):
        self.bundle = bundle
        self.precision = precision
        self.specs = dict(bundle.graphs)  # the bundle's graphs, plus any the backend derives (``fused_pick``)
        self.compute_seconds = 0.0
        self.calls = 0

    def run(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``graph`` on host arrays; returns outputs by name (numpy)."""
        return self._timed(self._run_impl, graph, feeds)

    def _timed(self, impl, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        self.specs[graph].check_feeds(feeds)
        start = time.perf_counter()
        out = impl(graph, feeds)
        self.compute_seconds += time.perf_counter() - start
        self.calls += 1
        return out

    def _run_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # --- values: what loops feed back (numpy, or torch tensors on the device with ``values``) -----

    def put(self, array: np.ndarray) -> Any:
        """A host array as a value ``run_values`` takes."""
        return self.values.put(array) if self.values else array

    def get(self, value: Any) -> np.ndarray:
        """A value back on the host as numpy."""
        return self.values.get(value) if self.values else value

    def take_rows(self, value: Any, axis: int, keep: np.ndarray) -> Any:
        """The rows of ``value`` along ``axis`` where the boolean mask ``keep`` is true."""
        if keep.all():
            return value  # every row still alive: no copy
        if self.values:
            return self.values.take_rows(value, axis, keep)
        return np.ascontiguousarray(np.compress(keep, value, axis=axis))

    def run_values(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Run on values (from ``put``, earlier outputs, or host arrays); outputs stay values."""
        if self.values is None:
            return self.run(graph, feeds)
        return self._timed(self._run_values_impl, graph, {k: self.values.put(v) for k, v in feeds.items()})

    def _run_values_impl(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def fused_pick(self, graph: str, logits: str, mode: str) -> str | None:
        """The name of a graph that runs ``graph`` and picks the next token from its ``logits`` in
        the same call (``samplers.graph_pick``, one of its ``MODES``), or None: the sampler picks
        on the host."""
        return None

    def describe(self) -> str:
        """A short description for tables: ``onnxruntime[CPUExecutionProvider]``."""
        return self.name

    def close(self) -> None:
        pass

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TorchValues:
    """Values as torch tensors on one device (``"cuda"``, or ``"cpu"`` to run the same path on a
    host): the memory of device-resident backends (TensorRT, ONNX Runtime IO binding). torch only
    allocates and copies here; the backend's runtime reads and writes the tensors by address."""

    def __init__(self, device: str):
        import torch

        self.torch, self.device = torch, device

    def put(self, value):
        """numpy → a tensor on the device; a tensor already there passes through."""
        if isinstance(value, self.torch.Tensor):
            return value
        return self.torch.from_numpy(np.ascontiguousarray(value)).to(self.device)

    def get(self, value) -> np.ndarray:
        return value.cpu().numpy() if isinstance(value, self.torch.Tensor) else np.asarray(value)

    def take_rows(self, value, axis: int, keep: np.ndarray):
        index = self.torch.from_numpy(np.flatnonzero(keep)).to(value.device)
        return value.index_select(axis, index).contiguous()
