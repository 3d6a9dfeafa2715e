"""What ``genctl tune`` searches: the candidate settings of a bundle, and its reference (the current defaults).

A candidate is one way to run the bundle: backend, precision variant, batch size and the sampler's
controls. What is searched depends on the sampler:

- diffusion: the solver (the choices of the sampler's own ``sampler`` Control, so a solver added
  there is searched without a change here) x steps (10, 15, 20, 30, 50 and the default, within the
  model's T) x guidance around the default (2/3, 1 and 5/3 of it; only 1 for a model trained without
  null-class dropout);
- autoregressive (text): temperature around the default x (top_k, top_p) in {default, top-k 20,
  top-p 0.9};
- one-shot: no controls (the defaults); precision, backend and batch only.

Every family: fp32 and each built variant that passed its gate (``manifest["variants"]``), on every
``--backends`` entry that runs it, at every ``--batch`` size. Settings the sampler refuses (steps
above T, guidance on a model without an unconditional prediction) are left out before any work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from genctl.bundle import Bundle
from genctl.errors import GenctlError

STEPS = (10, 15, 20, 30, 50)
GUIDANCE_FACTORS = (2 / 3, 1.0, 5 / 3)  # around the default: 3 -> 2, 3, 5
TEMPERATURE_FACTORS = (0.75, 1.0)
TEXT_TRUNCATIONS = ({}, {"top_k": 20}, {"top_p": 0.9})
TUNED_CONTROLS = {"diffusion": ("sampler", "steps", "guidance_scale"), "autoregressive": ("temperature", "top_k", "top_p"),
                  "oneshot": ()}


@dataclass
class Candidate:
    """One setting to measure; ``stats`` is shared by candidates whose samples are the same (batch size
    changes the speed, never the samples: batched and alone give the same samples)."""

    backend: str
    precision: str
    batch: int
    controls: dict[str, Any]
    stats: "AccuracyStats"
    reference: bool = False
    times: list[float] = field(default_factory=list)  # seconds per timed generate call (as bench times them)
    status: str = "measured"
    dropped_round: int | None = None
    note: str = ""  # why it was dropped, in full (the table's status is short)

    @property
    def alive(self) -> bool:
        return self.dropped_round is None and self.status == "measured"

    @property
    def samples_per_s(self) -> float | None:
        return self.batch * len(self.times) / sum(self.times) if self.times else None

    @property
    def p50_ms(self) -> float | None:
        if not self.times:
            return None
        ordered = sorted(self.times)
        mid = len(ordered) // 2
        return 1e3 * (ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2)

    def label(self) -> str:
        controls = " ".join(f"{_short(k)}={_fmt(v)}" for k, v in self.controls.items())
        return controls or "defaults"

    def settings(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "batch": self.batch, "controls": dict(self.controls)}


@dataclass
class AccuracyStats:
    """Pooled control-accuracy measurements of one (backend, precision, controls): one entry per round."""

    correct: float = 0.0  # accuracy x samples, summed over rounds
    samples: int = 0
    diversity_sum: float = 0.0  # diversity x samples
    seconds: float = 0.0  # spent generating and scoring
    per_class: int = 0  # samples per class (or per prompt / locale) so far
    rounds: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.samples if self.samples else None

    @property
    def diversity(self) -> float | None:
        return self.diversity_sum / self.samples if self.samples else None

    def stderr(self) -> float:
        """Binomial standard error of the accuracy (Laplace-smoothed, so 0/N and N/N are not certain)."""
        if not self.samples:
            return 1.0
        p = (self.correct + 1) / (self.samples + 2)
        return math.sqrt(p * (1 - p) / self.samples)


def tuned_controls(bundle: Bundle) -> tuple[str, ...]:
    return TUNED_CONTROLS.get(bundle.sampler["kind"], ())


def sampler_controls(bundle: Bundle) -> dict[str, Any]:
    """The sampler's Control declarations by name (``sampler_class(kind).controls``)."""
    from genctl.runtime.samplers import sampler_class

    return {c.name: c for c in sampler_class(bundle.sampler["kind"]).controls}


def default_controls(bundle: Bundle) -> dict[str, Any]:
    """The tuned controls at the bundle's current defaults (the reference)."""
    spec = sampler_controls(bundle)
    defaults = bundle.sampler.get("defaults", {})
    return {name: spec[name].check(defaults.get(name, spec[name].default)) for name in tuned_controls(bundle) if name in spec}


def control_grid(bundle: Bundle) -> list[dict[str, Any]]:
    """Every combination of tuned control values, the reference's first; only what the sampler accepts."""
    from genctl.runtime.generator import check_request

    kind = bundle.sampler["kind"]
    spec = sampler_controls(bundle)
    ref = default_controls(bundle)
    grid: list[dict[str, Any]] = [ref]
    if kind == "diffusion":
        solvers = list(spec["sampler"].choices) if "sampler" in spec else [None]
        steps = sorted({*STEPS, ref["steps"]})
        w0 = ref["guidance_scale"]
        scales = sorted({round(w0 * f * 2) / 2 for f in GUIDANCE_FACTORS}) if w0 > 0 else [w0]
        for solver in solvers:
            for s in steps:
                for w in scales:
                    grid.append({k: v for k, v in (("sampler", solver), ("steps", s), ("guidance_scale", w)) if v is not None})
    elif kind == "autoregressive":
        t0 = ref["temperature"]
        temps = sorted({round(t0 * f, 3) for f in TEMPERATURE_FACTORS} | ({1.0} if t0 >= 0.75 else set()))
        for t in temps:
            for trunc in TEXT_TRUNCATIONS:
                grid.append({**ref, "temperature": t, "top_k": 0, "top_p": 1.0, **trunc})
    out: list[dict[str, Any]] = []
    for controls in grid:
        if controls in out:
            continue
        try:
            check_request(bundle, None, 1, 0, **controls)
        except GenctlError:
            continue  # e.g. steps above T, guidance on a model without an unconditional prediction
        out.append(controls)
    return out


def parse_backends(text: str) -> list[tuple[str, str | None]]:
    """``"onnxruntime,torch,onnxruntime:int8"`` -> ``[(name, precision or None = every runnable precision)]``."""
    from genctl.runtime.backends import check_backend_name

    out = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        name, sep, precision = item.partition(":")
        check_backend_name(name)
        out.append((name, precision if sep else None))
    if not out:
        raise GenctlError("--backends", got=repr(text), expected="a comma-separated list, e.g. onnxruntime,torch")
    return out


def usable_precisions(bundle: Bundle, backend: str) -> list[str]:
    """fp32 and the built variants whose gate passed, that ``backend`` runs."""
    from genctl.runtime.backends import auto_backend, backend_class

    base = backend.split("+")[0]
    base = auto_backend(bundle, "fp32") if base == "auto" else base
    runs = backend_class(base).precisions
    passed = [name for name, v in bundle.manifest.get("variants", {}).items() if v.get("status") == "passed"]
    return [p for p in ["fp32", *sorted(passed)] if p in runs]


def candidates(bundle: Bundle, backends: list[tuple[str, str | None]], batches: list[int]) -> list[Candidate]:
    """The whole search space; the first is the reference (defaults, fp32, first backend, first batch)."""
    grid = control_grid(bundle)
    stats: dict[tuple, AccuracyStats] = {}
    out: list[Candidate] = []
    for name, precision in backends:
        precisions = [precision] if precision else usable_precisions(bundle, name)
        for p in precisions:
            for controls in grid:
                key = (name, p, tuple(sorted(controls.items())))
                shared = stats.setdefault(key, AccuracyStats())
                for b in batches:
                    out.append(Candidate(name, p, b, dict(controls), shared))
    ref_backend = backends[0][0]
    ref = next((c for c in out if c.backend == ref_backend and c.precision == "fp32" and c.batch == batches[0]
                and c.controls == grid[0]), None)
    if ref is None:  # the first backend was asked for a variant only: the reference is fp32 there all the same
        ref = Candidate(ref_backend, "fp32", batches[0], dict(grid[0]), AccuracyStats())
        out.insert(0, ref)
    ref.reference = True
    out.remove(ref)
    return [ref, *out]


def _short(name: str) -> str:
    return {"guidance_scale": "w", "temperature": "T", "sampler": "solver"}.get(name, name)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
