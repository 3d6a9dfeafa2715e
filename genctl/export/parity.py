"""Parity: does the exported graph (and the whole sampling loop) match PyTorch?

Error metric everywhere: ``max |got - ref| / max(1, max |ref|)`` — the max abs error relative to
the output's scale (absolute for outputs within [-1, 1]). fp32 tolerance: 1e-4.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from genctl.spec import GraphSpec, TensorSpec

# int8 (dynamic quantization) measured 4-5e-2 max error on the mnist cVAE with unchanged control
# accuracy; its bound is set at 2x that. Broken graphs (NaN, wrong weights) err by O(1).
TOLERANCE = {"fp32": 1e-4, "opt": 1e-4, "fp16": 1e-2, "int8": 1e-1}
PARITY_BATCHES = (1, 7)


def scaled_error(got: np.ndarray, ref: np.ndarray) -> float:
    if got.shape != ref.shape:
        return float("inf")
    if not np.all(np.isfinite(got)):
        return float("nan")
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    return float(diff.max(initial=0.0) / max(1.0, float(np.abs(ref).max(initial=0.0))))


def random_inputs(spec: GraphSpec, example: Mapping[str, torch.Tensor], batch: int, seed: int) -> dict[str, np.ndarray]:
    """Random feeds shaped like ``example`` with the batch axis set to ``batch``.

    Integer inputs draw from the range seen in the example (label indices, token ids) so they
    stay valid; float inputs are N(0, 1) (noise, latents) or U(-1, 1) for ``data`` (images).
    """
    rng = np.random.default_rng(seed)
    dims = _example_dims(spec, example)
    dims["batch"] = batch
    feeds = {}
    for t in spec.inputs:
        shape = t.concrete(dims)
        feeds[t.name] = _random_tensor(t, shape, example[t.name], rng)
    return feeds


def _example_dims(spec: GraphSpec, example: Mapping[str, torch.Tensor]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for t in spec.inputs:
        for want, have in zip(t.shape, example[t.name].shape):
            if isinstance(want, str):
                dims.setdefault(want, int(have))
    return dims


def _random_tensor(t: TensorSpec, shape: tuple[int, ...], example: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    if t.dtype.startswith("int"):
        high = int(t.high) if getattr(t, "high", None) else int(example.max().item()) + 1
        return rng.integers(0, max(high, 1), size=shape).astype(t.dtype)
    if t.role == "data":
        return rng.uniform(-1, 1, size=shape).astype(t.dtype)
    values = example.numpy()
    if values.size and values.min() >= 0 and t.role not in ("noise", "state"):
        return rng.uniform(values.min(), max(values.max(), 1e-3), size=shape).astype(t.dtype)  # schedules, scales
    return rng.standard_normal(size=shape).astype(t.dtype)


@torch.inference_mode()
def torch_outputs(module: torch.nn.Module, spec: GraphSpec, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = module(*[torch.from_numpy(feeds[n]) for n in spec.input_names])
    out = out if isinstance(out, (tuple, list)) else (out,)
    return {n: o.numpy() for n, o in zip(spec.output_names, out)}


def graph_parity(module: torch.nn.Module, spec: GraphSpec, example: Mapping[str, torch.Tensor], session,
                 batches=PARITY_BATCHES, tolerance: float = TOLERANCE["fp32"]) -> dict:
    """Compare an ORT session with the module on random inputs; a report dict per output."""
    report = {"batches": list(batches), "tolerance": tolerance, "outputs": {}}
    for i, batch in enumerate(batches):
        feeds = random_inputs(spec, example, batch, seed=1000 + i)
        ref = torch_outputs(module, spec, feeds)
        got = dict(zip(spec.output_names, session.run(spec.output_names, feeds)))
        for name in spec.output_names:
            err = scaled_error(got[name], ref[name])
            prev = report["outputs"].get(name, 0.0)
            report["outputs"][name] = err if np.isnan(err) or np.isnan(prev) else max(prev, err)
    errors = list(report["outputs"].values())
    report["max_error"] = float("nan") if any(np.isnan(e) for e in errors) else max(errors)
    report["passed"] = bool(all(e <= tolerance for e in errors))  # NaN compares False
    return report


def failures(report: dict) -> list[str]:
    """``["decode.sample 3.2e-03 > 1e-04"]`` for each failing output of a graph-parity report set."""
    out = []
    for graph, rep in report.items():
        for name, err in rep["outputs"].items():
            if not (err <= rep["tolerance"]):
                what = "NaN/Inf" if np.isnan(err) else f"{err:.2e}"
                out.append(f"{graph}.{name} {what} > {rep['tolerance']:.0e}")
    return out


def recurrent_drift(bundle, reference, other, steps: int = 100, seed: int = 0) -> dict:
    """Greedy decoding through a recurrent ``step`` graph for ``steps`` calls on two backends, each
    feeding back its own state and picks (never stopping at EOS): whether the tokens are identical,
    and the max abs difference of every state after the last call (the memory of an ``ntm``).

    The prompt is BOS (+ a bits model's random input and its suffix) for the parity conditions' rows.
    """
    section = bundle.sampler
    graph = section["graphs"]["step"]
    spec = bundle.graphs[graph]
    rows = bundle.conditions.parse(bundle.conditions.parity_request())
    conds = rows.feeds(bundle.conditions, 1)
    batch = rows.n_rows
    vocab = list(bundle.info["vocab"])
    prompt = [np.full(batch, int(bundle.info.get("special_tokens", {}).get("bos", 1)), dtype=np.int64)]
    bits = bundle.info.get("bits")
    if bits:
        first, rng = vocab.index("0" * int(bits["width"])), np.random.default_rng(seed)
        prompt += list(first + rng.integers(0, 2 ** int(bits["width"]), size=(int(bits["random_input"]), batch)))
        prompt += [np.full(batch, t, dtype=np.int64) for t in section.get("prompt_suffix", [])]
    banned = sorted(set(int(v) for v in bundle.info.get("special_tokens", {}).values()) - {int(section.get("eos", 2))})
    results = []
    for backend in (reference, other):
        state = {t.name: np.zeros(t.concrete({"batch": batch}), dtype=t.dtype) for t in spec.inputs if t.role == "state"}
        tokens, picked = prompt[0], []
        for i in range(steps):
            out = backend.run(graph, {section["token_input"]: tokens, **state, **conds})
            state = {inp: np.asarray(out[o]) for o, inp in section["feeds_back"].items()}
            logits = np.asarray(out[section["logits_output"]], dtype=np.float64)
            logits[:, banned] = -np.inf
            pick = logits.argmax(axis=1).astype(np.int64)
            picked.append(pick)
            tokens = prompt[i + 1] if i + 1 < len(prompt) else pick
        results.append((np.stack(picked[len(prompt) - 1:], axis=1), state))
    (ref_tokens, ref_state), (got_tokens, got_state) = results
    return {"steps": steps, "greedy_tokens_identical": bool(np.array_equal(ref_tokens, got_tokens)),
            "state_max_abs_diff": {k: float(np.abs(got_state[k].astype(np.float64) - ref_state[k]).max(initial=0.0))
                                   for k in ref_state}}
