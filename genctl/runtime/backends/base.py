"""Backend: runs one bundle's graphs by name and knows nothing of sampling.

Public ``run()`` validates feeds against the GraphSpec and times the call; ``_run_impl()`` does
the work (Polygraphy's runner pattern). ``compute_seconds`` accumulates the time spent inside
the runtime's own calls, so bench can report the share of overhead around it.
"""
from __future__ import annotations

import time
from typing import ClassVar, Mapping

import numpy as np

from genctl.bundle import Bundle


class Backend:
    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)

    def __init__(self, bundle: Bundle, precision: str = "fp32"):
        self.bundle = bundle
        self.precision = precision
        self.compute_seconds = 0.0
        self.calls = 0

    def run(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run ``graph`` on host arrays; returns outputs by name (numpy)."""
        self.bundle.graphs[graph].check_feeds(feeds)
        start = time.perf_counter()
        out = self._run_impl(graph, feeds)
        self.compute_seconds += time.perf_counter() - start
        self.calls += 1
        return out

    def _run_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def describe(self) -> str:
        """A short description for tables: ``onnxruntime[CPUExecutionProvider]``."""
        return self.name

    def close(self) -> None:
        pass

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
