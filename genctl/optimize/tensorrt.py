"""TensorRT engine builder (TensorRT 10+ Python API), one engine per graph.

For each graph: ``trt.Builder`` → network (explicit batch is the only mode in TensorRT 10) →
``trt.OnnxParser`` → ``IBuilderConfig`` with one optimization profile (min/opt/max per input from
``genctl.optimize.profiles``), the FP16 flag for ``fp16`` (TF32 cleared for ``fp32`` so fp32 means
fp32 and the 1e-4 gate applies), a persisted timing cache → ``build_serialized_network``.

Engines land in ``BUNDLE/engines/<key>/<graph>.engine`` (the folder is written beside and renamed
into place only after the quality gate passed) and the build record in
``manifest["engines"][<full key>]``. The timing cache is per platform
(``engines/timing-<platform>.cache``), since timings from another GPU are meaningless.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Mapping

from genctl.optimize.cache import Platform, engine_key, folder_name, key_material
from genctl.optimize.gate import GateConfig, control_samples, run_gate
from genctl.optimize.profiles import DimRange, bundle_profiles
from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable, GenctlError
from genctl.io import atomic_dir, sha256_file

WORKSPACE_BYTES = 4 << 30  # builder scratch memory limit (tactics needing more are skipped)


def import_tensorrt():
    """The ``tensorrt`` module (10.x or newer) or a one-line BackendUnavailable."""
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendUnavailable("Target 'tensorrt'", got="the tensorrt package is not installed",
                                 expected="tensorrt>=10 and an NVIDIA GPU",
                                 fix="pip install tensorrt (10 or newer) on a machine with an NVIDIA GPU, or use --target onnxruntime") from None
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise BackendUnavailable("Target 'tensorrt'", got=f"tensorrt {trt.__version__}", expected="tensorrt>=10",
                                 fix="pip install -U 'tensorrt>=10'")
    return trt


def current_platform() -> Platform:
    """TensorRT version, GPU name and compute capability of device 0 (the engine's binding)."""
    trt = import_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("Target 'tensorrt'", got="no CUDA GPU visible to torch",
                                 expected="an NVIDIA GPU with its driver and a CUDA build of torch",
                                 fix="run on a GPU machine, or use --target onnxruntime")
    major, minor = torch.cuda.get_device_capability(0)
    return Platform(tensorrt=str(trt.__version__), gpu=torch.cuda.get_device_name(0), compute_capability=f"{major}.{minor}")


def build_engine(trt, onnx_path: Path, profile: Mapping[str, dict], precision: str, timing_cache: Path) -> bytes:
    """Parse ``onnx_path`` and return the serialized engine (bytes)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise GenctlError(f"TensorRT ONNX parser on '{onnx_path.name}'", got=errors[:300] or "a parse failure",
                          expected="a graph TensorRT supports", fix="use --target onnxruntime for this bundle")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    opt_profile = builder.create_optimization_profile()
    for name, shapes in profile.items():
        opt_profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(opt_profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, False)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise GenctlError(f"TensorRT build of '{onnx_path.name}'", got="no engine (see the TensorRT log above)",
                          expected="a serialized engine", fix="rerun with --verbose; or use --target onnxruntime")
    _write_atomic(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(blob))


def build_engines(bundle: Bundle, ranges: Mapping[str, DimRange], precision: str, *, force: bool = False,
                  gate: GateConfig | None = None) -> dict:
    """Build (or reuse) the engine set for this bundle/profile/precision/platform; gate; record it."""
    trt = import_tensorrt()
    platform = current_platform()
    profiles = bundle_profiles(bundle, ranges)
    shas = {name: spec.sha256 for name, spec in bundle.graphs.items()}
    key = engine_key(shas, profiles, precision, platform)
    engines = bundle.manifest.setdefault("engines", {})
    if key in engines and engines[key].get("status") == "passed" and not force and _files_ok(bundle, engines[key]):
        return engines[key]  # cached: same graphs, profiles, precision, TensorRT and GPU
    rel_dir = f"engines/{folder_name(key)}"
    (bundle.path / "engines").mkdir(exist_ok=True)
    timing = bundle.path / "engines" / f"timing-{_platform_tag(platform)}.cache"
    with atomic_dir(bundle.path / rel_dir, overwrite=True, what="engine folder") as tmp:
        record = {"key": key, "precision": precision, "platform": platform.to_json(), "profiles": profiles,
                  "dims": {d: r.as_list() for d, r in ranges.items()}, "graphs": {},
                  "material": key_material(shas, profiles, precision, platform), "built_at": _now()}
        for name in bundle.graphs:
            (tmp / f"{name}.engine").write_bytes(build_engine(trt, bundle.graph_file(name), profiles[name], precision, timing))
            record["graphs"][name] = {"file": f"{rel_dir}/{name}.engine", "sha256": sha256_file(tmp / f"{name}.engine")}
        report = _gate(bundle, precision, record, tmp, ranges, gate)
        record.update(gate=report, status="passed" if report["passed"] else "failed")
        if not report["passed"] and not force:
            from genctl.optimize import gate_error

            raise gate_error(f"tensorrt {precision}", report)
    engines[key] = record
    bundle.save_manifest()
    return record


def _gate(bundle: Bundle, precision: str, record: dict, folder: Path, ranges: Mapping[str, DimRange],
          gate: GateConfig | None) -> dict:
    from genctl.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from genctl.runtime.backends.tensorrt import TensorRTBackend

    batch = ranges["batch"]
    # Every gate call must fit the profile: parity at min/opt (and max when small), the loop and
    # the control check with at most batch.max samples per call.
    rows = bundle.conditions.parse(None).n_rows
    per_call = max(1, batch.max // max(rows, 1))
    gate = gate or GateConfig()
    config = dataclasses.replace(gate, batches=tuple(sorted({batch.min, batch.opt} | ({batch.max} if batch.max <= 256 else set()))),
                                 loop_n=min(gate.loop_n, per_call), control_n_per_class=min(control_samples(bundle, gate), per_call))
    return run_gate(bundle, precision, lambda: TensorRTBackend(bundle, precision, record=record, engine_dir=folder),
                    lambda: OnnxRuntimeBackend(bundle, "fp32", providers=["CPUExecutionProvider"]), config)


def _files_ok(bundle: Bundle, record: dict) -> bool:
    return all((bundle.path / g["file"]).is_file() for g in record.get("graphs", {}).values())


def _platform_tag(platform: Platform) -> str:
    return hashlib.sha256(repr(sorted(platform.to_json().items())).encode()).hexdigest()[:12]


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
