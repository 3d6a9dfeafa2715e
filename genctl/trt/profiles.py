"""Optimization profiles (min/opt/max input shapes) derived from a bundle's GraphSpecs.

TensorRT needs, for every input with a dynamic axis, the smallest, the tuned-for and the largest
shape it must accept. Those come from the spec's symbolic dims alone, so every family gets them:

- ``batch`` from ``--batch MIN:OPT:MAX`` (the user's batch: a diffusion step graph doubles it for
  classifier-free guidance *inside* the graph, so its inputs still carry the user batch);
- any other dim (``seq``, ``past`` for autoregressive graphs) from ``--dim NAME=MIN:OPT:MAX`` or,
  by default, ``1 : max/2 : max`` where ``max`` is the bundle's limit for that dim.

A dim's limit is ``manifest.info.dims[name]`` when the family records one, else a length the
family states (``max_length``, ``block_size``, ``context``), else the export limit (65536, the
``torch.export.Dim`` max used by ``genctl export``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from genctl.bundle import Bundle
from genctl.errors import GenctlError
from genctl.spec import GraphSpec

EXPORT_DIM_MAX = 65536  # genctl.export.onnx: torch.export.Dim(min=1, max=65536)
LENGTH_KEYS = ("max_length", "block_size", "context", "max_len", "seq_len")


@dataclass(frozen=True)
class DimRange:
    """One symbolic dim's ``min <= opt <= max``."""

    min: int
    opt: int
    max: int

    def as_list(self) -> list[int]:
        return [self.min, self.opt, self.max]


def parse_range(text: str | int | DimRange, what: str) -> DimRange:
    """``"1:8:64"`` → DimRange(1, 8, 64); ``"8"`` → (8, 8, 8). Refuses ``min > opt > max``."""
    if isinstance(text, DimRange):
        return check_range(text, what)
    parts = str(text).strip().split(":")
    if len(parts) == 1:
        parts = parts * 3
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3:
        raise GenctlError(what, got=repr(str(text)), expected="MIN:OPT:MAX integers such as 1:8:64 (or one integer)")
    return check_range(DimRange(*values), what)


def check_range(r: DimRange, what: str) -> DimRange:
    if r.min < 1:
        raise GenctlError(what, got=f"min {r.min}", expected="a minimum of at least 1")
    if not r.min <= r.opt <= r.max:
        raise GenctlError(what, got=f"{r.min}:{r.opt}:{r.max}", expected="MIN <= OPT <= MAX")
    return r


def dim_limit(bundle: Bundle, dim: str) -> int:
    """The largest value ``dim`` may take in this bundle's graphs."""
    info = bundle.info
    explicit = info.get("dims", {}).get(dim)
    if isinstance(explicit, int) and explicit > 0:
        return explicit
    if dim != "batch":
        for key in LENGTH_KEYS:
            value = info.get(key, bundle.sampler.get(key))
            if isinstance(value, int) and value > 0:
                return value
    return EXPORT_DIM_MAX


def dim_ranges(bundle: Bundle, batch: str | DimRange = "1:8:64",
               dims: Mapping[str, str | DimRange] | None = None) -> dict[str, DimRange]:
    """A DimRange for every symbolic dim of the bundle's graphs, checked against its limit."""
    names = sorted({d for g in bundle.graphs.values() for d in g.symbolic_dims()})
    given = {"batch": batch, **(dims or {})}
    unknown = sorted(set(given) - set(names) - {"batch"})
    if unknown:
        raise GenctlError(f"--dim {unknown[0]}", got="a dim no graph of this bundle has", expected=f"one of {names}")
    ranges = {}
    for name in names:
        limit = dim_limit(bundle, name)
        flag = "--batch" if name == "batch" else f"--dim {name}"
        r = parse_range(given[name], flag) if name in given else DimRange(1, max(1, limit // 2), limit)
        if r.max > limit:
            raise GenctlError(flag, got=f"max {r.max}", expected=f"<= {limit} (the graphs' limit for '{name}')")
        ranges[name] = r
    return ranges


def graph_profile(spec: GraphSpec, ranges: Mapping[str, DimRange]) -> dict[str, dict[str, list[int]]]:
    """``{input: {"min": shape, "opt": shape, "max": shape}}`` for one graph."""
    out = {}
    for t in spec.inputs:
        out[t.name] = {sel: [d if isinstance(d, int) else getattr(ranges[d], sel) for d in t.shape]
                       for sel in ("min", "opt", "max")}
    return out


def bundle_profiles(bundle: Bundle, ranges: Mapping[str, DimRange]) -> dict[str, dict]:
    """Profiles of every graph, keyed by graph name (what the engine cache key hashes)."""
    return {name: graph_profile(spec, ranges) for name, spec in bundle.graphs.items()}


def check_shapes(profile: Mapping[str, dict], feeds_shapes: Mapping[str, tuple[int, ...]], graph: str) -> None:
    """Refuse a feed whose shape lies outside the engine's profile (a one-line error, not a TRT crash)."""
    for name, shape in feeds_shapes.items():
        lo, hi = profile[name]["min"], profile[name]["max"]
        if any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            raise GenctlError(f"Input '{name}' of engine '{graph}'", got=f"shape {tuple(shape)}",
                              expected=f"between {tuple(lo)} and {tuple(hi)} (the build's profile)",
                              fix="rebuild with a wider --batch, e.g. 'genctl build BUNDLE --target tensorrt --batch 1:8:256'")
