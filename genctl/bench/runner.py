"""Time whole ``Generator.generate`` calls per (backend, precision, batch size).

Each configuration: a generator is opened (sessions built, ``torch.compile`` warmed), ``warmup``
untimed calls, then ``iters`` timed calls with ``time.perf_counter``. Samples/s, tokens/s and
per-step numbers come from the same calls; ``vs torch`` divides by torch eager's samples/s at the
same batch size **in this run** (the first ``torch`` entry of ``--backends``: ``torch+cuda`` on a GPU
box, so a GPU is compared with a GPU), and ``vs compile`` by ``torch-compile``'s where one ran.
``overhead_pct`` is the share of the call spent outside the backend's own ``run`` (sampler, feeds,
copies), for the "runtime overhead" question.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from genctl.bundle import Bundle
from genctl.checks import MAX_SAMPLES, check_seed
from genctl.conditions import PromptCache
from genctl.errors import GenctlError
from genctl.runtime.generator import Generator, check_request

MAX_ITERS = 1_000_000  # timed or warm-up calls per configuration


@dataclass
class BenchResult:
    backend: str
    precision: str
    batch_size: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    samples_per_s: float
    speedup_vs_torch: float | None
    overhead_pct: float
    iters: int
    runtime: str  # e.g. onnxruntime[CPU]
    speedup_vs_compile: float | None = None  # vs the first torch-compile entry (reduce-overhead on CUDA)
    extra: dict[str, float] = field(default_factory=dict)  # per_step_ms, steps_per_s, tokens_per_s, ttft_ms, itl_*

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data


def parse_backends(text: str, precision: str | None = None) -> list[tuple[str, str]]:
    """``"torch,onnxruntime,onnxruntime:int8"`` → ``[("torch","fp32"), ("onnxruntime","fp32"), ("onnxruntime","int8")]``.

    ``precision`` (``--precision``) is the default for entries without ``:PRECISION``; the fp32-only
    torch backends keep fp32, so they stay the baseline next to the variant.
    """
    out = []
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        name, sep, given = item.partition(":")
        if not sep and precision:
            given = precision if _has_variants(name) else "fp32"
        out.append((name, given or "fp32"))
    if not out:
        raise GenctlError("--backends", got=repr(text), expected="a comma-separated list, e.g. torch,onnxruntime")
    return out


def _has_variants(name: str) -> bool:
    from genctl.runtime.backends import backend_class

    base = name.split("+")[0]
    return base == "auto" or backend_class(base).precisions != ("fp32",)


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        sizes = []
    if not sizes or any(s <= 0 for s in sizes):
        raise GenctlError("--batch-sizes", got=repr(text), expected="comma-separated positive integers, e.g. 1,16,64")
    return sizes


def bench_conditions(bundle: Bundle) -> dict[str, Any]:
    """One condition row: each condition's example value (the first class, a prompt, zeros)."""
    return {c.name: c.example() for c in bundle.conditions.conditions}


def time_config(gen: Generator, batch: int, warmup: int, iters: int, seed: int, controls: dict) -> tuple[np.ndarray, float, list]:
    """Return (latencies in s, share of time inside backend.run, the Samples.meta of each timed call)."""
    conds = bench_conditions(gen.bundle)
    if gen.bundle.conditions.encoders:  # text prompts: every call encodes (end to end), timed on its own too
        gen.prompt_cache = PromptCache(maxsize=0)
    for i in range(warmup):
        gen.generate(conds, n=batch, seed=seed + i, **controls)
    gen.backend.compute_seconds = 0.0
    times, metas = [], []
    for i in range(iters):
        start = time.perf_counter()
        samples = gen.generate(conds, n=batch, seed=seed + i, **controls)
        times.append(time.perf_counter() - start)
        metas.append({**samples.meta, "encode_s": gen.encode_s} if gen.bundle.conditions.encoders else samples.meta)
    inside = gen.backend.compute_seconds / max(sum(times), 1e-12)
    return np.asarray(times), inside, metas


def extra_metrics(times: np.ndarray, metas: list[dict], batch: int) -> dict[str, float]:
    """Diffusion (steps) and autoregressive (tokens, TTFT, inter-token latency) numbers."""
    extra: dict[str, float] = {}
    if metas and "steps" in metas[0]:
        steps = np.asarray([m["steps"] for m in metas], dtype=float)
        extra["per_step_ms"] = float(np.median(times / steps) * 1e3)
        extra["steps_per_s"] = float(steps.sum() / times.sum())
    if metas and "encode_s" in metas[0]:  # the prompt encoder's share of the end-to-end call
        encode = np.asarray([m["encode_s"] for m in metas], dtype=float)
        extra["encode_ms"] = float(np.median(encode) * 1e3)
        extra["encode_pct"] = float(100 * encode.sum() / times.sum())
    if metas and "tokens" in metas[0]:
        extra["tokens_per_s"] = float(sum(m["tokens"] for m in metas) / times.sum())
        extra["sequences_per_s"] = float(batch * len(times) / times.sum())
        if "ttft_s" in metas[0]:
            extra["ttft_ms"] = float(np.median([m["ttft_s"] for m in metas]) * 1e3)
        itl = np.concatenate([np.asarray(m.get("inter_token_s", []), dtype=float) for m in metas]) * 1e3
        if itl.size:
            extra.update({f"itl_p{q}_ms": float(np.percentile(itl, q)) for q in (50, 90, 99)})
    return extra


def run_bench(bundle: Bundle, backends: list[tuple[str, str]], batch_sizes: list[int], *, warmup: int = 3,
              iters: int = 20, seed: int = 0, controls: dict | None = None,
              on_step: Callable[[str], None] | None = None, generators: list[Generator] | None = None) -> list[BenchResult]:
    """Benchmark every (backend, precision) at every batch size; torch eager is the speedup base.

    ``generators`` (from ``open_generators``) lets a caller open the backends before showing progress.
    """
    controls = {k: v for k, v in (controls or {}).items() if v is not None}
    check_bench(bundle, batch_sizes, warmup=warmup, iters=iters, seed=seed, controls=controls)
    results: list[BenchResult] = []
    with contextlib.ExitStack() as stack:  # open all first: a missing variant, package or GPU fails before any timing
        gens = generators if generators is not None else open_generators(bundle, backends, stack)
        for (name, precision), gen in zip(backends, gens):
            for batch in batch_sizes:
                times, inside, metas = time_config(gen, batch, warmup, iters, seed, controls)
                ms = times * 1e3
                results.append(BenchResult(
                    backend=name, precision=precision, batch_size=batch,
                    p50_ms=float(np.percentile(ms, 50)), p90_ms=float(np.percentile(ms, 90)),
                    p99_ms=float(np.percentile(ms, 99)), mean_ms=float(ms.mean()),
                    samples_per_s=float(batch * len(times) / times.sum()), speedup_vs_torch=None,
                    overhead_pct=float(max(0.0, 1.0 - inside) * 100), iters=iters, runtime=gen.backend.describe(),
                    extra=extra_metrics(times, metas, batch)))
                if on_step:
                    on_step(f"{name}:{precision} batch {batch}")
    _speedups(results)
    return results


def open_generators(bundle: Bundle, backends: list[tuple[str, str]], stack: contextlib.ExitStack) -> list[Generator]:
    """Open every (backend, precision) first: a missing variant, package or GPU fails before any timing."""
    return [stack.enter_context(Generator.load(bundle, backend=name, precision=precision)) for name, precision in backends]


def check_bench(bundle: Bundle, batch_sizes: list[int], *, warmup: int, iters: int, seed: int, controls: dict) -> None:
    """Refuse bad counts, batch sizes and controls before any backend opens."""
    for flag, value, low in (("--iters", iters, 1), ("--warmup", warmup, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_ITERS:
            raise GenctlError(flag, got=repr(value), expected=f"an integer in {low}..{MAX_ITERS}")
    if max(batch_sizes) > MAX_SAMPLES:
        raise GenctlError("--batch-sizes", got=max(batch_sizes), expected=f"at most {MAX_SAMPLES} (the graphs' batch limit)")
    # the largest batch with the bench's conditions and controls: the same checks every timed call passes
    check_request(bundle, bench_conditions(bundle), max(batch_sizes), seed, **controls)
    check_seed(seed + iters + warmup)


def _baseline(results: list[BenchResult], kind: str) -> dict[int, float]:
    """Samples/s per batch size of the first ``kind`` entry (``torch``, ``torch+cuda``, ``torch-compile+cpu`` ...)."""
    names = [r.backend for r in results if r.backend.split("+")[0] == kind and r.precision == "fp32"]
    return {r.batch_size: r.samples_per_s for r in results if names and r.backend == names[0] and r.precision == "fp32"}


def _speedups(results: list[BenchResult]) -> None:
    eager, compiled = _baseline(results, "torch"), _baseline(results, "torch-compile")
    for r in results:
        if r.batch_size in eager:
            r.speedup_vs_torch = r.samples_per_s / eager[r.batch_size]
        if r.batch_size in compiled:
            r.speedup_vs_compile = r.samples_per_s / compiled[r.batch_size]
