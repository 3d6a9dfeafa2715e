"""``genctl build``: optimized artifacts of an exported bundle, each behind the quality gate.

- ``--target onnxruntime --precision fp32|fp16|int8`` writes ``graphs/<graph>.<variant>.onnx``
  (``fp32`` on this target is the offline-optimized graph, recorded as variant ``opt``) and records
  ``manifest["variants"][variant]`` = files + sha256, provenance, gate report, status.
- ``--target tensorrt|tensorrt-rtx --precision fp32|fp16`` builds one engine per graph into
  ``engines/<key>/`` and records ``manifest["engines"][key]`` (see ``genctl.optimize.tensorrt``);
  ``tensorrt-rtx`` builds without a GPU for ``--compute-capability`` (default 8.0,8.6,8.9,12.0).

New files are written under temporary names, gated, then renamed; a refused variant leaves the
bundle exactly as it was (``force=True`` keeps it, marked ``"status": "failed"``).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Sequence

from genctl.bundle import Bundle
from genctl.errors import GenctlError
from genctl.io import sha256_file, write_error
from genctl.optimize.gate import GateConfig, gate_error, run_gate
from genctl.optimize.ort_variants import Int8Options, build_variant
from genctl.trt.profiles import DimRange, dim_ranges

TARGETS = {"onnxruntime": ("fp32", "fp16", "int8", "opt"), "tensorrt": ("fp32", "fp16"), "tensorrt-rtx": ("fp32", "fp16")}


def build(bundle: str | Path | Bundle, *, target: str = "onnxruntime", precision: str = "int8",
          batch: str | DimRange = "1:8:64", dims: Mapping[str, str] | None = None, force: bool = False,
          keep_fp32: Sequence[str] = (), int8: Int8Options | None = None, gate: GateConfig | None = None,
          compute_capability: str | None = None) -> dict:
    """Build one variant (or engine set) and gate it; returns its manifest record.

    ``compute_capability`` (``tensorrt-rtx`` only): ``"8.6,8.9"`` or ``"current"``.
    Raises ParityError (nothing written) when the gate refuses it and ``force`` is false.
    """
    check_target(target, precision)
    check_gate_config(gate)
    if compute_capability and target == "onnxruntime":
        raise GenctlError("--compute-capability", got="target 'onnxruntime'", expected="target tensorrt-rtx",
                          fix="leave the option out: ONNX variants run on any device")
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    check_keep(bundle, keep_fp32, target)
    check_writable(bundle)
    ranges = dim_ranges(bundle, batch, {**prompt_dims(bundle), **(dims or {})})
    try:  # temp files are removed on failure; a write that fails anyway (disk full) is one line
        if target != "onnxruntime":
            from genctl.optimize.tensorrt import build_engines

            return build_engines(bundle, ranges, precision, target=target, capabilities=compute_capability, force=force, gate=gate)
        return build_ort_variant(bundle, "opt" if precision == "fp32" else precision, force=force,
                                 keep_fp32=keep_fp32, int8=int8, gate=gate)
    except OSError as exc:
        raise write_error(bundle.path, f"{target} {precision} build into bundle", exc) from None


def prompt_dims(bundle: Bundle) -> dict[str, DimRange]:
    """Default ranges for the token dim of a prompt-encoder graph (``seq`` of a text condition's
    ``encoder``): ``1 : max_tokens : max_tokens``, since the encode stage always feeds ``max_tokens``
    tokens and the graph was exported for at most that many (the manifest records no limit for
    ``seq``, so the generic default would be 1:32768:65536). Only dims no other graph uses."""
    encoders = {c.encoder_graph: int(c.max_tokens) for c in bundle.conditions.conditions
                if c.takes_prompts and c.encoder_graph in bundle.graphs and getattr(c, "max_tokens", None)}
    others = {d for name, spec in bundle.graphs.items() if name not in encoders for d in spec.symbolic_dims()}
    out: dict[str, DimRange] = {}
    for name, max_tokens in encoders.items():
        for d in bundle.graphs[name].symbolic_dims():
            if d != "batch" and d not in others:
                out[d] = DimRange(1, max_tokens, min(max_tokens, out[d].max) if d in out else max_tokens)
    return out


def check_target(target: str, precision: str) -> None:
    if target not in TARGETS:
        raise GenctlError(f"--target '{target}'", got="an unknown target", expected=f"one of {sorted(TARGETS)}")
    if precision not in TARGETS[target]:
        raise GenctlError(f"--precision '{precision}' for target '{target}'", got="an unknown precision",
                          expected=f"one of {list(TARGETS[target])}")


MAX_CONTROL_SAMPLES = 10_000  # per class or locale: 100 is the text default; more only costs time


def check_gate_config(gate: GateConfig | None) -> None:
    n = None if gate is None else gate.control_n_per_class
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_CONTROL_SAMPLES):
        raise GenctlError("--control-samples", got=repr(n), expected=f"an integer in 0..{MAX_CONTROL_SAMPLES} (0 skips the check)")


def check_keep(bundle: Bundle, keep_fp32: Sequence[str], target: str) -> None:
    for name in keep_fp32:
        if name not in bundle.graphs:
            raise GenctlError(f"--keep-fp32 '{name}'", got="no such graph", expected=f"one of {sorted(bundle.graphs)}")
    if keep_fp32 and target != "onnxruntime":
        raise GenctlError("--keep-fp32", got=f"target '{target}'", expected="target onnxruntime",
                          fix="TensorRT engines are built per graph: build that graph's engine with --precision fp32")


def check_writable(bundle: Bundle) -> None:
    """Fail before any work when the bundle cannot take new files (probe, since root ignores modes)."""
    for folder in (bundle.path, bundle.path / "graphs"):
        probe = folder / f".genctl-write-probe-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise GenctlError(f"Bundle '{bundle.path}'", got=f"'{folder}' is not writable ({exc.strerror})",
                              expected="a writable bundle folder", fix="copy the bundle to a writable place and build there") from None


def build_ort_variant(bundle: Bundle, variant: str, *, force: bool = False, keep_fp32: Sequence[str] = (),
                      int8: Int8Options | None = None, gate: GateConfig | None = None) -> dict:
    """Convert every graph, gate the candidate, then rename into place and save the manifest."""
    tmp_files: dict[str, Path] = {}
    variants = bundle.manifest.setdefault("variants", {})
    previous = variants.get(variant)
    try:
        record = {"graphs": {}, "provenance": {}}
        if variant == "opt":  # optimised for, and only loadable on, the provider it will run on here
            from genctl.runtime.devices import onnxruntime_providers, optimization_provider

            record["provider"] = optimization_provider(onnxruntime_providers()[1])
        for name, spec in bundle.graphs.items():
            if name in keep_fp32:
                record["graphs"][name] = {"file": spec.file, "sha256": spec.sha256}
                record["provenance"][name] = {"kept": "fp32 (--keep-fp32)"}
                continue
            tmp = bundle.path / "graphs" / f".{name}.{variant}.onnx.tmp-{os.getpid()}"
            tmp_files[name] = tmp
            record["provenance"][name] = build_variant(bundle.graph_file(name), tmp, variant, int8,
                                                       provider=record.get("provider", "CPUExecutionProvider"))
            record["graphs"][name] = {"file": tmp.relative_to(bundle.path).as_posix(), "sha256": sha256_file(tmp)}
        variants[variant] = record  # the gate opens the candidate through the manifest, in memory only
        report = _gate_ort(bundle, variant, gate)
        record.update(gate=report, status="passed" if report["passed"] else "failed", built_at=_now(),
                      int8=asdict(int8 or Int8Options()) if variant == "int8" else None, keep_fp32=list(keep_fp32))
        if not report["passed"] and not force:
            raise gate_error(variant, report)
        _commit(bundle, record, tmp_files, variant)
        return record
    except BaseException:
        if previous is None:
            variants.pop(variant, None)
        else:
            variants[variant] = previous
        raise
    finally:
        for tmp in tmp_files.values():
            tmp.unlink(missing_ok=True)


def _gate_ort(bundle: Bundle, variant: str, gate: GateConfig | None) -> dict:
    from genctl.runtime.backends.onnxruntime import OnnxRuntimeBackend

    return run_gate(bundle, variant, lambda: OnnxRuntimeBackend(bundle, variant),
                    lambda: OnnxRuntimeBackend(bundle, "fp32"), gate)


def _commit(bundle: Bundle, record: dict, tmp_files: Mapping[str, Path], variant: str) -> None:
    """Rename the gated temp files to their final names, then write the manifest (atomic)."""
    for name, tmp in tmp_files.items():
        final = bundle.path / "graphs" / f"{name}.{variant}.onnx"
        os.replace(tmp, final)
        record["graphs"][name]["file"] = final.relative_to(bundle.path).as_posix()
    if not record.get("keep_fp32"):
        record.pop("keep_fp32", None)
    if record.get("int8") is None:
        record.pop("int8", None)
    bundle.save_manifest()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


__all__ = ["TARGETS", "GateConfig", "Int8Options", "build", "build_ort_variant", "check_writable"]
