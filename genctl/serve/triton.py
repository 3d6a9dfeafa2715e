"""Triton Inference Server model repository from a bundle: ``genctl export-triton BUNDLE --out REPO``.

Every graph becomes an ONNX Runtime model ``<family>_<graph>/1/model.onnx`` with a
``config.pbtxt`` written from its GraphSpec (names, types, dims). A graph whose every input and
output has ``batch`` as its first dim gets ``max_batch_size`` and Triton's dynamic batcher
(``max_queue_delay_microseconds``, preferred sizes, a bounded queue that rejects when full), the
same policy as ``genctl serve``. A batch-only input (shape ``[batch]``) is declared as
``dims: [1]`` with ``reshape: { shape: [] }``, Triton's convention for per-row scalars.

One-shot families (cgan, cvae, cflow) are complete as plain models: the client sends noise +
conditions and gets samples. Loop families (diffusion, charrnn, chartransformer) export their
step graphs the same way; the loop (timesteps and guidance, or token picking) runs in the client,
as ``genctl``'s samplers do - ``README.md`` in the repository says how, from the manifest.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from genctl.bundle import Bundle
from genctl.errors import GenctlError
from genctl.io import atomic_dir
from genctl.spec import GraphSpec, TensorSpec

TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
                "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8"}


def model_name(bundle: Bundle, graph: str) -> str:
    return f"{bundle.family}_{graph}"


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


def model_config(name: str, spec: GraphSpec, *, max_batch: int = 64, max_wait_us: int = 5000,
                 max_queue: int = 256) -> str:
    """``config.pbtxt`` text for one graph (protobuf text format of Triton's ``ModelConfig``)."""
    batched = batchable(spec)
    parts = [f'name: "{name}"', 'backend: "onnxruntime"', f"max_batch_size: {max_batch if batched else 0}",
             "input [\n" + ",\n".join(_tensor(t, batched) for t in spec.inputs) + "\n]",
             "output [\n" + ",\n".join(_tensor(t, batched) for t in spec.outputs) + "\n]",
             "instance_group [ { count: 1, kind: KIND_AUTO } ]"]
    if batched:
        preferred = [b for b in (8, 16, 32, 64, 128) if b <= max_batch] or [max_batch]
        parts.append("dynamic_batching {\n"
                     f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
                     f"  max_queue_delay_microseconds: {max_wait_us}\n"
                     "  default_queue_policy {\n"
                     "    timeout_action: REJECT\n"
                     "    default_timeout_microseconds: 60000000\n"
                     f"    max_queue_size: {max_queue}\n"
                     "  }\n}")
    return "\n".join(parts) + "\n"


def export_triton(bundle: str | Path | Bundle, out: str | Path, *, max_batch: int = 64, max_wait_ms: float = 5.0,
                  max_queue: int = 256, force: bool = False) -> Path:
    """Write a Triton model repository for ``bundle`` at ``out`` (atomically); returns ``out``."""
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    out = Path(out)
    with atomic_dir(out, overwrite=force, what="model repository") as tmp:
        models = {}
        for graph, spec in bundle.graphs.items():
            name = model_name(bundle, graph)
            (tmp / name / "1").mkdir(parents=True)
            shutil.copyfile(bundle.graph_file(graph), tmp / name / "1" / "model.onnx")
            (tmp / name / "config.pbtxt").write_text(
                model_config(name, spec, max_batch=max_batch, max_wait_us=int(max_wait_ms * 1000), max_queue=max_queue))
            models[graph] = name
        (tmp / "README.md").write_text(_readme(bundle, models))
        (tmp / "genctl_sampler.json").write_text(json.dumps({"family": bundle.family, "models": models,
                                                             "conditions": bundle.conditions.to_json(),
                                                             "sampler": bundle.sampler, "info": bundle.info}, indent=2))
    return out


def _readme(bundle: Bundle, models: dict[str, str]) -> str:
    kind = bundle.sampler["kind"]
    how = {
        "oneshot": "One call: send `noise` (standard normal × temperature) and the conditions; the output is the sample.",
        "diffusion": "Per request: x_T ~ N(0, I); for each of the `steps` timesteps (strided over the schedule in "
                     "`genctl_sampler.json` → info.schedule) call the step model with x_t, noise, t, alpha_bar_t, "
                     "alpha_bar_prev, guidance_scale, eta and the label (a step model with x0_prev / x0_delta_coef inputs: "
                     "zeros and 0 for DDIM, DPM-Solver++(2M)'s coefficient from genctl.schedule otherwise); feed x_prev "
                     "back as x_t (and x0_out as x0_prev).",
        "autoregressive": "Per request: feed BOS (+ prefix), then one token per call; pick the next token on the "
                          "client from the logits (temperature / top-k / top-p), feed the state outputs back "
                          "(`sampler.feeds_back` in `genctl_sampler.json`), stop at EOS.",
    }[kind]
    lines = [f"# Triton model repository: {bundle.family} (genctl)", "",
             "Start: `tritonserver --model-repository=.` (ONNX Runtime backend).", "",
             f"Sampler kind `{kind}`. {how}", "",
             "The loop and its seeded noise live in the client, as in genctl's samplers: Triton's dynamic batcher "
             "merges the per-step calls of concurrent requests." if kind != "oneshot" else
             "Triton's dynamic batcher merges concurrent requests into one call.", "", "Models:"]
    lines += [f"- `{name}`: graph `{graph}`" for graph, name in models.items()]
    return "\n".join(lines) + "\n"
