"""Triton Inference Server model repository from a bundle: ``genctl export-triton BUNDLE --out REPO``.

```
REPO/
  <family>_generate/config.pbtxt       the whole sampling loop: conditions, seed, n, controls in; samples / texts out
  <family>_generate/1/model.py         Python backend (genctl.serve.triton_model.GenerateModel) on ONNX Runtime
  <family>_generate/1/bundle/          the bundle it loads (manifest, graphs, source; no TensorRT engines)
  <family>_<graph>/config.pbtxt        one model per exported graph, its spec as Triton inputs and outputs
  <family>_<graph>/1/model.onnx        (+ model.py with the default graph backend "python")
  README.md  genctl_sampler.json       how to serve it; the sampler section for clients that run the loop themselves
```

Every model gets Triton's dynamic batcher (``max_queue_delay_microseconds``, a bounded queue that rejects
when full: ``genctl serve``'s policy). The generate model's batch is requests (``max_batch_size`` of them
per ``execute``, one genctl request per row, merged in one sampler call); its tensor contract is
``genctl.serve.triton_io``. A graph whose tensors all lead with ``batch`` gets ``max_batch_size``; a
batch-only input (shape ``[batch]``) is ``dims: [1]`` with ``reshape: { shape: [] }``.

The graphs run on the Python backend by default, so the repository loads on any Triton with the Python
backend (the ``nvidia-pytriton`` wheel's server has no ONNX Runtime backend); ``graph_backend="onnxruntime"``
writes them for Triton's native ONNX Runtime backend instead (``platform``-free configs, the same tensors).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from genctl.bundle import Bundle
from genctl.errors import GenctlError
from genctl.io import atomic_dir
from genctl.runtime.samplers import sampler_class
from genctl.serve import triton_io
from genctl.serve.triton_backend import model_py
from genctl.spec import GraphSpec, TensorSpec

TRITON_TYPES = triton_io.TYPES
GRAPH_BACKENDS = ("python", "onnxruntime")


def model_name(bundle: Bundle, graph: str) -> str:
    return f"{bundle.family}_{graph}"


def generate_model_name(bundle: Bundle) -> str:
    return f"{bundle.family}_generate"


def batchable(spec: GraphSpec) -> bool:
    """True when ``batch`` leads every tensor, so Triton may stack requests along it."""
    return all(t.shape and t.shape[0] == "batch" for t in spec.inputs + spec.outputs)


def _tensor(t: TensorSpec, batched: bool) -> str:
    if t.dtype not in TRITON_TYPES:
        raise GenctlError(f"Tensor '{t.name}'", got=f"dtype {t.dtype}", expected=f"one of {sorted(TRITON_TYPES)}")
    shape = t.shape[1:] if batched else t.shape
    dims = [d if isinstance(d, int) else -1 for d in shape]
    lines = [f'    name: "{t.name}"', f"    data_type: {TRITON_TYPES[t.dtype]}"]
    if batched and not dims:  # a per-row scalar: Triton wants [1] on the wire, [] to the model
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    else:
        lines.append(f"    dims: [ {', '.join(str(d) for d in dims)} ]")
    return "  {\n" + "\n".join(lines) + "\n  }"


def _port(p: triton_io.Port) -> str:
    lines = [f'    name: "{p.name}"', f"    data_type: {TRITON_TYPES[p.dtype]}", f"    dims: [ {', '.join(map(str, p.dims))} ]"]
    if p.role != "output" and p.optional:
        lines.append("    optional: true")
    return "  {\n" + "\n".join(lines) + "\n  }"


def _batching(max_wait_us: int, max_queue: int, preferred: list[int] | None = None) -> str:
    pref = f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n" if preferred else ""
    return ("dynamic_batching {\n" + pref + f"  max_queue_delay_microseconds: {max_wait_us}\n"
            "  default_queue_policy {\n    timeout_action: REJECT\n    default_timeout_microseconds: 60000000\n"
            f"    max_queue_size: {max_queue}\n  }}\n}}")


def _parameters(params: dict[str, str]) -> list[str]:
    return [f'parameters {{ key: "{k}" value: {{ string_value: "{v}" }} }}' for k, v in params.items()]


def model_config(name: str, spec: GraphSpec, *, max_batch: int = 64, max_wait_us: int = 5000, max_queue: int = 256,
                 backend: str = "python", instances: int = 1) -> str:
    """``config.pbtxt`` text for one graph (protobuf text format of Triton's ``ModelConfig``)."""
    if backend not in GRAPH_BACKENDS:
        raise GenctlError("--graph-backend", got=backend, expected=f"one of {list(GRAPH_BACKENDS)}")
    batched = batchable(spec)
    kind = "KIND_CPU" if backend == "python" else "KIND_AUTO"
    parts = [f'name: "{name}"', f'backend: "{backend}"', f"max_batch_size: {max_batch if batched else 0}",
             "input [\n" + ",\n".join(_tensor(t, batched) for t in spec.inputs) + "\n]",
             "output [\n" + ",\n".join(_tensor(t, batched) for t in spec.outputs) + "\n]",
             f"instance_group [ {{ count: {instances}, kind: {kind} }} ]"]
    if batched:
        parts.append(_batching(max_wait_us, max_queue, [b for b in (8, 16, 32, 64, 128) if b <= max_batch] or [max_batch]))
    return "\n".join(parts) + "\n"


def generate_config(bundle: Bundle, name: str, *, max_batch: int = 64, max_wait_us: int = 5000, max_queue: int = 256,
                    instances: int = 1, max_rows: int = 1024, precision: str = "fp32") -> str:
    """``config.pbtxt`` of the generate model: the tensors of ``triton_io``, the dynamic batcher over requests."""
    sampler = sampler_class(bundle.sampler["kind"])(bundle)
    ins, outs = triton_io.inputs(bundle, sampler), triton_io.outputs(bundle)
    parts = [f'name: "{name}"', 'backend: "python"', f"max_batch_size: {max_batch}",
             "input [\n" + ",\n".join(_port(p) for p in ins) + "\n]",
             "output [\n" + ",\n".join(_port(p) for p in outs) + "\n]",
             f"instance_group [ {{ count: {instances}, kind: KIND_CPU }} ]", _batching(max_wait_us, max_queue)]
    parts += _parameters({"max_rows": str(max_rows), "backend": "onnxruntime+nospin", "precision": precision})
    return "\n".join(parts) + "\n"


def check_limits(*, max_batch: int, max_wait_ms: float, max_queue: int, instances: int, max_rows: int = 1024) -> None:
    for name, value, low in (("--max-batch", max_batch, 1), ("--max-queue", max_queue, 1), ("--instances", instances, 1),
                             ("--max-rows", max_rows, 1)):
        if not isinstance(value, int) or value < low:
            raise GenctlError(name, got=value, expected=f"an integer >= {low}")
    if not 0 <= max_wait_ms <= 60_000:
        raise GenctlError("--max-wait-ms", got=max_wait_ms, expected="a delay in [0, 60000] ms")


def export_triton(bundle: str | Path | Bundle, out: str | Path, *, max_batch: int = 64, max_wait_ms: float = 5.0,
                  max_queue: int = 256, instances: int = 1, max_rows: int = 1024, graph_backend: str = "python",
                  precision: str = "fp32", graphs: bool = True, force: bool = False) -> Path:
    """Write a Triton model repository for ``bundle`` at ``out`` (atomically); returns ``out``.

    ``precision``: the bundle variant the generate model runs (``genctl build`` writes them); ``graphs=False``
    writes only the generate model (what ``genctl serve --triton`` loads).
    """
    check_limits(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue, instances=instances, max_rows=max_rows)
    if graph_backend not in GRAPH_BACKENDS:
        raise GenctlError("--graph-backend", got=graph_backend, expected=f"one of {list(GRAPH_BACKENDS)}")
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    if precision != "fp32":
        bundle.graph_file(next(iter(bundle.graphs)), precision)  # a one-line error naming 'genctl build' if absent
    out, wait_us = Path(out), int(max_wait_ms * 1000)
    gen_name = generate_model_name(bundle)
    config = generate_config(bundle, gen_name, max_batch=max_batch, max_wait_us=wait_us, max_queue=max_queue,
                             instances=instances, max_rows=max_rows, precision=precision)  # before writing: a bundle it cannot serve fails here
    with atomic_dir(out, overwrite=force, what="model repository") as tmp:
        _write_generate(bundle, tmp / gen_name, config)
        models = {}
        for graph, spec in (bundle.graphs.items() if graphs else ()):
            name = model_name(bundle, graph)
            (tmp / name / "1").mkdir(parents=True)
            shutil.copyfile(bundle.graph_file(graph), tmp / name / "1" / "model.onnx")
            if graph_backend == "python":
                (tmp / name / "1" / "model.py").write_text(model_py("GraphModel"))
            (tmp / name / "config.pbtxt").write_text(model_config(name, spec, max_batch=max_batch, max_wait_us=wait_us,
                                                                  max_queue=max_queue, backend=graph_backend, instances=instances))
            models[graph] = name
        (tmp / "README.md").write_text(_readme(bundle, gen_name, models, graph_backend))
        (tmp / "genctl_sampler.json").write_text(json.dumps({"family": bundle.family, "generate": gen_name, "models": models,
                                                             "conditions": bundle.conditions.to_json(),
                                                             "sampler": bundle.sampler, "info": bundle.info}, indent=2))
    return out


def _write_generate(bundle: Bundle, folder: Path, config: str) -> None:
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.py").write_text(model_py("GenerateModel"))
    shutil.copytree(bundle.path, folder / "1" / "bundle", ignore=shutil.ignore_patterns("engines", ".*"))
    (folder / "config.pbtxt").write_text(config)


def _readme(bundle: Bundle, gen_name: str, models: dict[str, str], graph_backend: str) -> str:
    sampler = sampler_class(bundle.sampler["kind"])(bundle)
    ins = ", ".join(f"`{p.name}` {p.wire} {list(p.dims)}" for p in triton_io.inputs(bundle, sampler))
    outs = ", ".join(f"`{p.name}` {p.wire} {list(p.dims)}" for p in triton_io.outputs(bundle))
    lines = [f"# Triton model repository: {bundle.family} (genctl)", "",
             f"`{gen_name}` runs the whole sampling loop ({bundle.sampler['kind']}) through ONNX Runtime on Triton's Python "
             "backend: one genctl request per batch row, concurrent requests merged into one sampler call by the dynamic "
             "batcher; the same seed gives the same samples as `genctl generate`.", "",
             f"- inputs (all optional, batch dim first): {ins}", f"- outputs: {outs}", "",
             "Serve: `tritonserver --model-repository=.` on a Triton with the Python backend; genctl and onnxruntime must be "
             "importable there (pip install genctl into the backend's Python, PYTHONPATH, or an EXECUTION_ENV_PATH "
             "conda-pack environment). Without a full installation: `genctl serve BUNDLE --triton` runs the tritonserver "
             "that the nvidia-pytriton wheel bundles.", ""]
    if models:
        lines += [f"Per-graph models ({graph_backend} backend{': ONNX Runtime inside the Python backend' if graph_backend == 'python' else ''}); "
                  "a client that runs the loop itself uses them with `genctl_sampler.json` (the manifest's sampler section):"]
        lines += [f"- `{name}`: graph `{graph}`" for graph, name in models.items()]
    return "\n".join(lines) + "\n"
