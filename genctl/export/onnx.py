"""Export a checkpoint to a bundle: torch.onnx (dynamo) per graph, checks, parity, manifest.

Steps, all inside a temp dir that replaces ``out`` only when every check passed:
1. rebuild the model from the checkpoint (safetensors + config);
2. export each family graph with named inputs and the spec's symbolic dims as dynamic axes;
3. ``onnx.checker`` (full check) + shape inference; the ONNX I/O must match the GraphSpec;
4. graph parity vs PyTorch at batch 1 and 7 (ONNX Runtime, CPU);
5. write the manifest, then loop parity: the sampler on torch and onnxruntime, same seed.
"""
from __future__ import annotations

import datetime
import platform
import re
import shutil
import traceback
from pathlib import Path

import onnx
import torch

from genctl import progress
from genctl.bundle import MANIFEST, SCHEMA_VERSION, Bundle
from genctl.checkpoint import CONFIG, WEIGHTS, load_checkpoint
from genctl.errors import GenctlError, ParityError
from genctl.export import parity
from genctl.families import get_family
from genctl.families.base import GraphDef
from genctl.io import atomic_dir, check_output_dir, sha256_file, write_json_atomic
from genctl.logs import quiet
from genctl.spec import GraphSpec
from genctl.version import __version__

OPSET = 18
ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.FLOAT16: "float16",
               onnx.TensorProto.INT32: "int32", onnx.TensorProto.BOOL: "bool"}


def check_apart(checkpoint: Path, out: Path) -> None:
    """``--out`` the checkpoint itself (or a folder around or inside it) would replace it, with --force."""
    ck, dst = checkpoint.resolve(), out.resolve()
    if dst == ck or ck in dst.parents or dst in ck.parents:
        raise GenctlError(f"--out '{out}'", got=f"the checkpoint folder '{checkpoint}' or a folder around or inside it",
                          expected="a bundle folder apart from the checkpoint", fix="choose another --out")


def export_bundle(checkpoint: str | Path, out: str | Path, *, overwrite: bool = False, opset: int = OPSET,
                  loop_seed: int = 0) -> Bundle:
    """Export ``checkpoint`` into the bundle folder ``out``; raises ParityError if parity fails."""
    check_apart(Path(checkpoint), Path(out))
    check_output_dir(out, "bundle", overwrite=overwrite)  # before loading, tracing and parity checks
    config, state = load_checkpoint(Path(checkpoint))
    family = get_family(config["family"])
    model = family.build_model(config)
    model.load_state_dict(state)
    model.eval()
    graphs = family.graphs(model, config)
    with atomic_dir(Path(out), overwrite=overwrite, what="bundle") as tmp:
        (tmp / "graphs").mkdir()
        reports = {}
        with progress.bar("export", 2 * len(graphs) + 1) as advance:
            for name, gdef in graphs.items():
                export_graph(gdef, tmp / "graphs" / f"{name}.onnx", opset)
                advance(graph=name)
                reports[name] = check_graph(gdef, tmp / "graphs" / f"{name}.onnx")
                advance(graph=name, err=reports[name]["max_error"])
            bad = parity.failures(reports)
            if bad:
                raise ParityError("Graph parity", got="; ".join(bad), expected="every output within tolerance vs PyTorch",
                                  fix="check the module for non-deterministic or unsupported ops; nothing was written")
            _copy_source(Path(checkpoint), tmp, family.source_files(config))
            manifest = build_manifest(family, config, graphs, tmp, opset, reports)
            write_json_atomic(tmp / MANIFEST, manifest)
            manifest["parity"]["loop"] = loop_parity(tmp, loop_seed)
            advance(loop=manifest["parity"]["loop"]["max_error"])
            write_json_atomic(tmp / MANIFEST, manifest)
    return Bundle.load(out)


def export_graph(gdef: GraphDef, path: Path, opset: int = OPSET) -> None:
    """torch.onnx.export (dynamo) with the spec's names and symbolic dims as dynamic axes."""
    spec, names = gdef.spec, gdef.spec.input_names
    dims = {d: torch.export.Dim(d, min=1, max=gdef.dim_max.get(d, 65536)) for d in spec.symbolic_dims()}
    dynamic = tuple({axis: dims[d] for axis, d in enumerate(t.shape) if isinstance(d, str)} or None for t in spec.inputs)
    dynamic = _group_var_positional(gdef.module, dynamic)
    args = tuple(gdef.example[n] for n in names)
    with quiet():
        try:
            program = torch.onnx.export(gdef.module, args, input_names=names, output_names=spec.output_names,
                                        dynamic_shapes=dynamic, opset_version=opset, dynamo=True, verbose=False,
                                        optimize=True)
        except Exception as exc:
            raise GenctlError(f"Export of graph '{spec.name}'", got=export_cause(exc),
                              expected="a module torch.export can trace (no branch on tensor values, no .item(), no mask built from data)",
                              fix="see README 'Bring your own model' (export failures); rerun with --verbose "
                                  "(export_model(..., verbose=True)) for the exporter's log") from None
        program.save(str(path))


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TORCH_INTERNALS = ("torch/", "onnxscript/", "onnx_ir/")


def export_cause(exc: BaseException) -> str:
    """The innermost exception of ``exc``'s cause/context chain: its type, first line (no colour codes), and where
    it arose: the last frame of its traceback in the user's code or a torch module (``torch/nn``) rather than
    the tracer's internals (``site-packages/torch/nn/modules/transformer.py:512 in _detect_is_causal_mask``)."""
    seen, inner = set(), exc
    while id(inner) not in seen:
        seen.add(id(inner))
        nxt = inner.__cause__ or inner.__context__
        if nxt is None:
            break
        inner = nxt
    lines = [" ".join(line.split()) for line in _ANSI.sub("", str(inner)).splitlines() if line.strip()]
    text = f"{type(inner).__name__}: {lines[0][:200]}" if lines else type(inner).__name__
    frames = traceback.extract_tb(inner.__traceback__)
    if not frames:
        return text

    def outside(frame) -> bool:
        rel = frame.filename.replace("\\", "/").split("site-packages/")[-1]
        return rel.startswith("torch/nn/") or not (rel.startswith(_TORCH_INTERNALS) or frame.filename.startswith("<"))

    frame = next((f for f in reversed(frames) if outside(f)), frames[-1])
    where = frame.filename.replace("\\", "/").split("site-packages/")[-1]
    return f"{text} (at {where}:{frame.lineno} in {frame.name})"


def _group_var_positional(module: torch.nn.Module, dynamic: tuple) -> tuple:
    """torch.export wants a ``forward(a, *rest)`` module's dynamic shapes nested as ``(a, (rest...))``.

    Wrappers around bring-your-own modules take their conditions as ``*rest`` (any number).
    """
    import inspect

    params = list(inspect.signature(module.forward).parameters.values())
    star = next((i for i, p in enumerate(params) if p.kind == inspect.Parameter.VAR_POSITIONAL), None)
    return dynamic if star is None else (*dynamic[:star], tuple(dynamic[star:]))


def check_graph(gdef: GraphDef, path: Path) -> dict:
    """onnx.checker + shape inference, I/O vs spec, then graph parity with ONNX Runtime (CPU)."""
    import onnxruntime as ort

    from genctl.runtime.backends.onnxruntime import session_options

    onnx.checker.check_model(str(path), full_check=True)
    onnx.shape_inference.infer_shapes_path(str(path), str(path) + ".inferred")
    Path(str(path) + ".inferred").unlink()
    match_io(onnx.load(str(path), load_external_data=False), gdef.spec)
    session = ort.InferenceSession(str(path), sess_options=session_options(), providers=["CPUExecutionProvider"])
    return parity.graph_parity(gdef.module, gdef.spec, gdef.example, session)


def match_io(model: onnx.ModelProto, spec: GraphSpec) -> None:
    """The ONNX graph's inputs/outputs must be exactly the spec's names and dtypes."""
    for kind, onnx_io, want in (("input", model.graph.input, spec.inputs), ("output", model.graph.output, spec.outputs)):
        got = [(v.name, ONNX_DTYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type))) for v in onnx_io]
        expected = [(t.name, t.dtype) for t in want]
        if got != expected:
            raise GenctlError(f"Exported {kind}s of graph '{spec.name}'", got=got, expected=expected,
                              fix="the module's forward must take/return tensors in the spec's order")


def _copy_source(checkpoint: Path, tmp: Path, extra: dict[str, bytes]) -> None:
    (tmp / "source").mkdir()
    for name in (CONFIG, WEIGHTS):
        shutil.copy2(checkpoint / name, tmp / "source" / name)
    for name, data in extra.items():  # e.g. a tokenizer the sampler's encode stage reads
        (tmp / "source" / name).write_bytes(data)


def build_manifest(family, config: dict, graphs: dict[str, GraphDef], root: Path, opset: int, reports: dict) -> dict:
    specs = {}
    for name, gdef in graphs.items():
        spec = GraphSpec.from_json(gdef.spec.to_json())
        spec.file = f"graphs/{name}.onnx"
        spec.sha256 = sha256_file(root / spec.file)
        specs[name] = spec.to_json()
    return {
        "schema_version": SCHEMA_VERSION,
        "family": family.name,
        "conditions": family.conditions(config).to_json(),
        "graphs": specs,
        "sampler": family.sampler_section(config),
        "info": family.info(config),
        "dataset": config["dataset"],
        "source": {"dir": "source", "sha256": {f"source/{p.name}": sha256_file(p) for p in sorted((root / "source").iterdir())}},
        "provenance": provenance(opset, config),
        "parity": {"metric": "max|onnx - torch| / max(1, max|torch|)", "graphs": reports},
    }


def provenance(opset: int, config: dict) -> dict:
    import onnxruntime

    return {"genctl": __version__, "torch": torch.__version__, "onnx": onnx.__version__, "opset": opset,
            "onnxruntime": onnxruntime.__version__, "exporter": "torch.onnx.export(dynamo=True)",
            "python": platform.python_version(), "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "training": config.get("train", {})}


def loop_parity(bundle_dir: Path, seed: int, n: int = 3) -> dict:
    """The whole sampler on torch and onnxruntime with one seed: samples must agree."""
    from genctl.runtime.generator import Generator

    bundle = Bundle.load(bundle_dir)
    conditions = bundle.conditions.parity_request()
    results = {}
    for backend in ("torch", "onnxruntime"):  # the reference is torch on the CPU, where the model was trained
        with Generator.load(bundle, backend="torch+cpu" if backend == "torch" else backend) as gen:
            results[backend] = gen.generate(conditions, n=n, seed=seed)
    tolerance = parity.TOLERANCE["fp32"] * bundle.sampler.get("loop_tolerance_factor", 1)
    err = parity.scaled_error(results["onnxruntime"].data, results["torch"].data)
    report = {"seed": seed, "n_per_condition": n, "max_error": err, "tolerance": tolerance, "passed": bool(err <= tolerance)}
    if results["torch"].texts:
        report["texts_identical"] = results["torch"].texts == results["onnxruntime"].texts
    if bundle.sampler.get("kind") == "autoregressive" and bundle.sampler.get("mode", "recurrent") == "recurrent" and "step" in bundle.sampler["graphs"]:
        with Generator.load(bundle, backend="torch+cpu") as ref, Generator.load(bundle, backend="onnxruntime") as ort:
            report["state_drift"] = parity.recurrent_drift(bundle, ref.backend, ort.backend, seed=seed)  # 100 greedy steps
    if not report["passed"]:
        raise ParityError("Loop parity (torch vs onnxruntime, same seed)", got=f"max error {err:.2e}",
                          expected=f"<= {tolerance:.0e}", fix="nothing was written; check the sampler inputs")
    return report
