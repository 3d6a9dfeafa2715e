"""TensorRT / TensorRT-RTX engine builder, one engine per graph (one code path for both).

For each graph: ``Builder`` → a *strongly typed* network → ``OnnxParser`` → ``IBuilderConfig``
with one optimization profile (min/opt/max per input from ``genctl.trt.profiles``), the
target compute capabilities (TensorRT-RTX) or a persisted timing cache (TensorRT) →
``build_serialized_network``. Every call that reports failure by its return value is checked.
What differs between the two modules is the table in ``genctl.trt.flavors``.

Precision comes from the graph: fp32 engines from the exported graphs (TF32 off, so fp32 means
fp32 and the 1e-4 gate applies), fp16 engines from the fp16 ONNX variant, whose sha256 goes into
the key (TensorRT 11 removed ``BuilderFlag.FP16``; TensorRT-RTX never had it).

Engines land in ``BUNDLE/engines/<key>/<graph>.engine`` (the folder is written beside and renamed
into place only when every graph built and, where a GPU can run them, the quality gate passed) and
the build record in ``manifest["engines"][<full key>]``. TensorRT-RTX engines built without a
suitable GPU are recorded with ``status: "built"``: they cannot be gated here.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

from genctl.bundle import Bundle
from genctl.errors import GenctlError
from genctl.io import atomic_dir, sha256_file
from genctl.optimize.gate import GateConfig, control_samples, gate_error, run_gate
from genctl.spec import GraphSpec
from genctl.trt.cache import Platform, engine_key, folder_name, key_material, mismatch
from genctl.trt.flavors import Flavor, capability_enum, flavor, parse_capabilities
from genctl.trt.gpu import gpu_compute_capability
from genctl.trt.platform import current_platform, gpu_name, io_mismatch, make_logger
from genctl.trt.profiles import DimRange, bundle_profiles

WORKSPACE_BYTES = 4 << 30  # builder scratch memory limit (tactics needing more are skipped)


def import_tensorrt(target: str = "tensorrt"):
    """The ``tensorrt`` (10 or newer) or TensorRT-RTX module, or a one-line BackendUnavailable."""
    return flavor(target).load()


def build_platform(fl: Flavor, trt, capabilities: Sequence[str]) -> Platform:
    """What the engines will be bound to: this GPU (TensorRT) or a capability list (TensorRT-RTX)."""
    if not fl.aot:
        return current_platform(fl.target)
    return Platform(tensorrt=str(trt.__version__), gpu="any", compute_capability=",".join(capabilities), runtime=fl.target)


def engine_sources(bundle: Bundle, precision: str) -> dict[str, tuple[Path, str]]:
    """``{graph: (onnx file, sha256)}``: the exported graphs for fp32, the fp16 variant for fp16."""
    if precision == "fp32":
        return {name: (bundle.graph_file(name), spec.sha256) for name, spec in bundle.graphs.items()}
    record = bundle.manifest.get("variants", {}).get(precision)
    if not record or record.get("status") != "passed":
        raise GenctlError(f"{precision} engines of bundle '{bundle.path}'",
                          got=f"no {'passed ' if record else ''}{precision} ONNX variant",
                          expected=f"the {precision} variant (strongly typed engines take their precision from the graph)",
                          fix=f"run 'genctl build {bundle.path} --target onnxruntime --precision {precision}' first")
    return {name: (bundle.graph_file(name, precision), record["graphs"][name]["sha256"]) for name in bundle.graphs}


def _parse(trt, network, logger, onnx_path: Path, graph: str, label: str) -> None:
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(onnx_path))
    if ok and parser.num_errors == 0:
        return
    if parser.num_errors:
        err = parser.get_error(0)
        got = f"node '{err.node_name() or err.node()}' ({err.node_operator() or 'unknown op'}): {err.desc()}"
    else:
        got = "; ".join(logger.errors) or "a parse failure"
    raise GenctlError(f"{label} ONNX parser on graph '{graph}'", got=" ".join(got.split())[:300],
                      expected=f"a graph {label} supports", fix="use --target onnxruntime for this bundle")


def _check(ok: bool, what: str, graph: str, label: str, logger) -> None:
    if not ok:
        raise GenctlError(f"{label} build of graph '{graph}'", got=f"{what} failed: {'; '.join(logger.errors)[:200] or 'see --verbose'}",
                          expected="a valid builder configuration")


def build_engine(trt, fl: Flavor, onnx_path: Path, spec: GraphSpec, profile: Mapping[str, dict],
                 capabilities: Sequence[str], timing_cache: Path | None) -> bytes:
    """Parse ``onnx_path`` into a strongly typed network and return the serialized engine."""
    graph = spec.name
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    _parse(trt, network, logger, onnx_path, graph, fl.label)
    diff = io_mismatch(spec, [network.get_input(i).name for i in range(network.num_inputs)],
                       [network.get_output(i).name for i in range(network.num_outputs)])
    if diff:
        raise GenctlError(f"{fl.label} network of graph '{graph}'", got=diff, expected="the GraphSpec's tensors", fix="re-export the bundle")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 layers stay fp32
    if fl.aot:
        config.num_compute_capabilities = len(capabilities)
        for i, capability in enumerate(capabilities):
            _check(config.set_compute_capability(capability_enum(trt, capability), i), f"compute capability {capability}", graph, fl.label, logger)
    opt_profile = builder.create_optimization_profile()
    for name, shapes in profile.items():
        opt_profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    _check(config.add_optimization_profile(opt_profile) >= 0, "add_optimization_profile", graph, fl.label, logger)
    if fl.timing_cache and timing_cache is not None:
        _attach_timing_cache(config, timing_cache, graph, fl, logger)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise GenctlError(f"{fl.label} build of graph '{graph}'", got=" ".join("; ".join(logger.errors).split())[:300] or "no engine",
                          expected="a serialized engine", fix="rerun with --verbose; or use --target onnxruntime")
    if fl.timing_cache and timing_cache is not None:
        _write_atomic(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(blob))


def _attach_timing_cache(config, path: Path, graph: str, fl: Flavor, logger) -> None:
    """Reuse the persisted timing cache; one from another TensorRT version is replaced by a fresh one."""
    if path.is_file() and config.set_timing_cache(config.create_timing_cache(path.read_bytes()), False):
        return
    _check(config.set_timing_cache(config.create_timing_cache(b""), False), "set_timing_cache", graph, fl.label, logger)


def gate_possible(fl: Flavor, platform: Platform) -> str | None:
    """Why the engines cannot be gated on this machine (None when they can: a GPU that runs them)."""
    here = gpu_compute_capability()
    if not fl.aot:
        return None  # TensorRT builds only where it runs
    probe = Platform(platform.tensorrt, gpu_name() if here else "none", here or "none", fl.target)
    return mismatch({"platform": platform.to_json()}, probe) and \
        f"no GPU of compute capability {platform.compute_capability} here (found: {here or 'no GPU'})"


@dataclasses.dataclass
class EngineSet:
    """One set of engines to build: everything its cache key hashes, and the module that builds it."""

    bundle: Bundle
    fl: Flavor
    trt: object
    platform: Platform
    precision: str
    sources: dict[str, tuple[Path, str]]  # graph -> (onnx file, sha256)
    ranges: Mapping[str, DimRange]

    def __post_init__(self) -> None:
        self.profiles = bundle_profiles(self.bundle, self.ranges)
        self.shas = {name: sha for name, (_, sha) in self.sources.items()}
        self.key = engine_key(self.shas, self.profiles, self.precision, self.platform)


def build_engines(bundle: Bundle, ranges: Mapping[str, DimRange], precision: str, *, target: str = "tensorrt",
                  capabilities: str | None = None, force: bool = False, gate: GateConfig | None = None) -> dict:
    """Build (or reuse) the engine set for this bundle/profile/precision/platform; gate; record it."""
    fl = flavor(target)
    trt = fl.load()
    platform = build_platform(fl, trt, parse_capabilities(capabilities, fl, gpu_compute_capability()))
    job = EngineSet(bundle, fl, trt, platform, precision, engine_sources(bundle, precision), ranges)
    no_gate = gate_possible(fl, platform)
    engines = bundle.manifest.setdefault("engines", {})
    cached = engines.get(job.key, {})
    if cached.get("status") in ("passed", "built" if no_gate else "passed") and not force and _files_ok(bundle, cached):
        return cached  # same graphs, profiles, precision, module version and GPU / capability list
    fresh = not (bundle.path / "engines").exists()
    try:
        record = _build_folder(job, no_gate, gate, force)
    except BaseException:
        if fresh and (bundle.path / "engines").is_dir() and not any((bundle.path / "engines").iterdir()):
            (bundle.path / "engines").rmdir()  # a failed first build leaves the bundle as it was
        raise
    engines[job.key] = record
    bundle.save_manifest()
    return record


def _build_folder(job: EngineSet, no_gate: str | None, gate: GateConfig | None, force: bool) -> dict:
    """Build every engine into a temp folder, gate where possible, rename it into place; the record."""
    bundle, fl = job.bundle, job.fl
    rel_dir = f"engines/{folder_name(job.key)}"
    timing = bundle.path / "engines" / f"timing-{_platform_tag(job.platform)}.cache" if fl.timing_cache else None
    with atomic_dir(bundle.path / rel_dir, overwrite=True, what="engine folder") as tmp:
        record = {"key": job.key, "target": fl.target, "precision": job.precision, "platform": job.platform.to_json(),
                  "profiles": job.profiles, "dims": {d: r.as_list() for d, r in job.ranges.items()}, "graphs": {},
                  "material": key_material(job.shas, job.profiles, job.precision, job.platform), "built_at": _now()}
        for name, (source, sha) in job.sources.items():
            start = time.perf_counter()
            blob = build_engine(job.trt, fl, source, bundle.graphs[name], job.profiles[name], job.platform.capabilities, timing)
            (tmp / f"{name}.engine").write_bytes(blob)
            record["graphs"][name] = {"file": f"{rel_dir}/{name}.engine", "sha256": sha256_file(tmp / f"{name}.engine"),
                                      "source": Path(os.path.relpath(source, bundle.path)).as_posix(), "source_sha256": sha,
                                      "build_seconds": round(time.perf_counter() - start, 3)}
        if no_gate:
            record.update(gate={"skipped": no_gate}, status="built")
        else:
            report = _gate(bundle, fl, job.precision, record, tmp, job.ranges, gate)
            record.update(gate=report, status="passed" if report["passed"] else "failed")
            if not report["passed"] and not force:
                raise gate_error(f"{fl.target} {job.precision}", report)
    return record


def _gate(bundle: Bundle, fl: Flavor, precision: str, record: dict, folder: Path, ranges: Mapping[str, DimRange],
          gate: GateConfig | None) -> dict:
    from genctl.runtime.backends import backend_class
    from genctl.runtime.backends.onnxruntime import OnnxRuntimeBackend

    batch = ranges["batch"]
    # Every gate call must fit the profile: parity at min/opt (and max when small), the loop and
    # the control check with at most batch.max samples per call.
    rows = bundle.conditions.parse(None).n_rows
    per_call = max(1, batch.max // max(rows, 1))
    gate = gate or GateConfig()
    config = dataclasses.replace(gate, batches=tuple(sorted({batch.min, batch.opt} | ({batch.max} if batch.max <= 256 else set()))),
                                 loop_n=min(gate.loop_n, per_call), control_n_per_class=min(control_samples(bundle, gate), per_call))
    return run_gate(bundle, precision, lambda: backend_class(fl.target)(bundle, precision, record=record, engine_dir=folder),
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
