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


@dataclass
class Request:
    """One request's share of a batch: its condition rows, ``n`` per row, its own seeded ``rng``,
    its validated controls and sampler inputs (``prefix=``, ``images=``).

    Every random draw for this request's rows comes from ``rng`` in the order a lone call would
    make it, so a request gives the same samples whether it runs alone or batched with others.
    """

    rows: ConditionRows
    n: int
    rng: np.random.Generator
    controls: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Sample rows this request adds to a batch (condition rows × n)."""
        return self.rows.n_rows * self.n


class Sampler:
    kind: ClassVar[str]
    label: ClassVar[str] = ""  # what the command line's help calls these models: "Text: softmax temperature ..."
    controls: ClassVar[list[Control]] = []  # each control's ``help`` is its command-line option's help too
    inputs: ClassVar[tuple[str, ...]] = ()  # sampler inputs beyond conditions (Generator.generate kwargs)

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.section = bundle.sampler

    def sample(self, backend: Backend, rows: ConditionRows, n: int, rng: np.random.Generator,
               controls: dict[str, Any], **inputs: Any) -> Samples:
        """One request: a batch of one (the batched path is the only path, so they cannot drift)."""
        return self.sample_batch(backend, [Request(rows, n, rng, controls, inputs)])[0]

    def sample_batch(self, backend: Backend, requests: list[Request]) -> list[Samples]:
        """Run several requests in one loop (one backend call per step); one ``Samples`` each.

        The requests must share ``batch_key``; per-row controls that the graphs take as inputs
        (guidance scale, eta) or that the host applies per row (temperature, top-k) may differ.
        """
        raise NotImplementedError

    def check(self, controls: dict[str, Any], inputs: dict[str, Any]) -> None:
        """Reject a request the loop cannot run (ConditionError), before it joins a batch."""

    def batch_key(self, request: Request) -> Any:
        """Requests with equal keys can share one loop; ``None`` means "run alone"."""
        return ()

    def noise(self, spec_input, batch: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
        """Standard-normal noise for a ``noise``-role input, drawn from the sampler's seeded rng."""
        shape = spec_input.concrete({"batch": batch})
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype(np.float32)


def split(requests: list[Request]) -> list[slice]:
    """The slice of a batch's rows that belongs to each request, in order."""
    out, start = [], 0
    for r in requests:
        out.append(slice(start, start + r.total))
        start += r.total
    return out


def condition_feeds(schema, requests: list[Request]) -> dict[str, np.ndarray]:
    """Condition arrays of every request's rows, concatenated in request order."""
    parts = [r.rows.feeds(schema, r.n) for r in requests]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
