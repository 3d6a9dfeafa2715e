"""The token pick as ONNX nodes, appended to a step graph: the step returns a token, not logits.

Decoding one token costs a graph call plus a host round trip: the logits come back, numpy picks
a token (``autoregressive.pick``: temperature, top-k, top-p, inverse CDF from one uniform), the
token goes in again. On a GPU the round trip and the host pick can cost more than the small
step itself (measured on an H100: text at batch 1 ran slower on the GPU than on its CPU cores).
Here the same pick is written as ONNX ops and appended to the step graph (``fuse``), so one call
takes the step's inputs plus the host-drawn uniforms and controls and returns the token:

    pick_u (B,) float64          the seeded uniform per row — the same draws as the host pick
    pick_temperature (B,) float64, pick_top_k (B,) int64, pick_top_p (B,) float64   per row
    pick_banned (V,) bool        tokens never picked (PAD, BOS; the sampler picks the first token on the host)
    → pick_token (B,) int64

The op sequence mirrors the numpy one step by step, in float64 like it (cast, mask, argmax when
the temperature is 0, divide, k-th largest via TopK with its lower-index-first tie rule — numpy's
stable sort —, softmax, nucleus mask scattered back from sorted order, cumulative sum, count of
CDF entries below ``u * total``), so the tokens are the host pick's: the only difference left is
the last ulp of ``exp`` and of the sums, which moves a token only if ``u`` lands within ~1e-16 of
a CDF step. The tests compare both pick paths token for token.

The graph is built for the ONNX Runtime backend (``OnnxRuntimeBackend.fused_pick``) from the
bundle's verified step graph at session creation; nothing new is written into the bundle.
TensorRT has no float64 and keeps the host pick.
"""
from __future__ import annotations

import itertools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from genctl.spec import GraphSpec, TensorSpec

TOKEN = "pick_token"
# What a step's live rows need, cheapest first: every row greedy (ArgMax, nothing else); sampling
# at a temperature (softmax and inverse CDF); and with top-k or top-p (two TopK sorts, a scatter).
MODES = ("greedy", "sample", "full")
MIN_OPSET = 13  # ReduceSum with axes as an input, ScatterElements/GatherElements/CumSum/TopK with K as input


def fused_name(graph: str, mode: str) -> str:
    return f"{graph}+pick:{mode}"


def mode_for(temperature, top_k, top_p, vocab: int) -> str:
    """The cheapest ``MODES`` entry that picks for these rows' controls exactly as the host would."""
    if ((top_k > 0) & (top_k < vocab)).any() or (top_p < 1.0).any():
        return "full"
    return "greedy" if (temperature == 0).all() else "sample"


def pick_inputs(batch: int | str, vocab: int | str) -> list[TensorSpec]:
    return [TensorSpec("pick_u", "float64", [batch], "control"),
            TensorSpec("pick_temperature", "float64", [batch], "control"),
            TensorSpec("pick_top_k", "int64", [batch], "control"),
            TensorSpec("pick_top_p", "float64", [batch], "control"),
            TensorSpec("pick_banned", "bool", [vocab], "control")]


def fusable(model: onnx.ModelProto, spec: GraphSpec, logits: str) -> str | None:
    """None when the pick can be appended to this graph, else why not (kept for ``--verbose``)."""
    opset = default_opset(model)
    if opset < MIN_OPSET:
        return f"opset {opset} < {MIN_OPSET}"
    out = next((t for t in spec.outputs if t.name == logits), None)
    if out is None or len(out.shape) != 2 or out.dtype != "float32":
        return f"logits output '{logits}' is not a float32 (batch, vocab) tensor"
    if not isinstance(out.shape[1], int):
        return f"logits output '{logits}' has no fixed vocabulary size (got {out.shape[1]!r})"
    if any(t.name.startswith("pick_") for t in spec.inputs + spec.outputs):
        return "the graph already has pick_* names"
    return None


def fused_spec(spec: GraphSpec, logits: str, mode: str = "full") -> GraphSpec:
    """The contract of ``fuse(model, spec, logits)``: the step's inputs plus the pick's; the
    logits output replaced by ``pick_token``."""
    out = next(t for t in spec.outputs if t.name == logits)
    batch, vocab = out.shape
    return GraphSpec(name=fused_name(spec.name, mode), inputs=[*spec.inputs, *pick_inputs(batch, vocab)],
                     outputs=[t for t in spec.outputs if t.name != logits] + [TensorSpec(TOKEN, "int64", [batch], "output")],
                     feeds_back=dict(spec.feeds_back), doc=f"{spec.name} with the token pick in the graph")


def fuse(model: onnx.ModelProto, spec: GraphSpec, logits: str, mode: str = "full") -> onnx.ModelProto:
    """A copy of ``model`` whose ``logits`` output feeds the ``mode`` pick nodes; I/O per ``fused_spec``
    (a mode that does not read an input still declares it, so every mode takes the same feeds)."""
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    g = fused.graph
    vocab = next(t for t in spec.outputs if t.name == logits).shape[1]
    nodes, consts = _pick_nodes(logits, default_opset(model), mode, vocab)
    g.node.extend(nodes)
    read = {x for n in nodes for x in n.input}
    g.initializer.extend(c for c in consts if c.name in read)
    target = fused_spec(spec, logits, mode)
    g.input.extend(_value_info(t) for t in target.inputs[len(spec.inputs):])
    kept = [o for o in g.output if o.name != logits]
    del g.output[:]
    g.output.extend(kept)
    g.output.append(_value_info(target.outputs[-1]))
    return fused


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _value_info(t: TensorSpec) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(t.name, helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype)), t.shape)


def _pick_nodes(logits: str, opset: int, mode: str, vocab: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes of ``autoregressive.pick`` (see the module doc) for one ``MODES`` entry, names under ``pick/``.

    The vocabulary size is a constant, not ``Shape`` of the logits: ORT's CUDA EP runs shape
    arithmetic on the CPU, and a CPU value read by a GPU kernel (``Min`` with ``V - 1``) inserts a
    Memcpy node, which makes a CUDA-graph session (``+graphpick+cudagraphs``) fail to load
    ("all compute graph nodes have not been partitioned to the CUDAExecutionProvider").
    """
    nodes: list[onnx.NodeProto] = []
    consts = [numpy_helper.from_array(np.array(v, dtype=d), f"pick/{n}") for n, v, d in (
        ("neg_inf", -np.inf, np.float64), ("neg_inf_f32", -np.inf, np.float32), ("zero", 0.0, np.float64), ("one", 1.0, np.float64),
        ("i0", 0, np.int64), ("i1", 1, np.int64), ("ax1", [1], np.int64), ("ax_last", [-1], np.int64),
        ("big", [np.iinfo(np.int64).max], np.int64), ("vocab", [vocab], np.int64), ("v", vocab, np.int64),
        ("v_last", vocab - 1, np.int64))]
    count = itertools.count()

    def op(kind: str, *inputs: str, outputs: int = 1, **attrs) -> str | list[str]:
        i = next(count)
        names = [f"pick/{kind}_{i}" + (f"_{j}" if j else "") for j in range(outputs)]
        nodes.append(helper.make_node(kind, list(inputs), names, name=f"pick/{kind}_{i}", **attrs))
        return names[0] if outputs == 1 else names

    def reduce(kind: str, x: str, keepdims: int) -> str:  # along axis 1; ReduceMax takes axes as an input from opset 18
        if kind == "ReduceMax" and opset < 18:
            return op(kind, x, axes=[1], keepdims=keepdims)
        return op(kind, x, "pick/ax1", keepdims=keepdims)

    C = "pick/"
    if mode == "greedy":  # every row at temperature 0: the first maximum, as numpy's argmax
        z = op("Where", "pick_banned", C + "neg_inf_f32", logits)
        nodes.append(helper.make_node("ArgMax", [z], [TOKEN], name="pick/token", axis=1, keepdims=0))
        return nodes, consts
    z = op("Where", "pick_banned", C + "neg_inf", op("Cast", logits, to=TensorProto.DOUBLE))   # (B, V) banned → -inf
    greedy = op("ArgMax", z, axis=1, keepdims=0)                                                 # rows at temperature 0
    is_greedy = op("Equal", "pick_temperature", C + "zero")
    temperature = op("Unsqueeze", op("Where", is_greedy, C + "one", "pick_temperature"), C + "ax1")
    z = op("Div", z, temperature)
    if mode == "full":  # top-k: the k-th largest value per row (TopK breaks ties by lower index: numpy's sort order)
        ranked = op("TopK", z, C + "vocab", outputs=2, axis=1, largest=1, sorted=1)[0]
        k_index = op("Min", op("Max", op("Sub", "pick_top_k", C + "i1"), C + "i0"), C + "v_last")
        kth = op("GatherElements", ranked, op("Unsqueeze", k_index, C + "ax1"), axis=1)          # (B, 1)
        use_k = op("And", op("Greater", "pick_top_k", C + "i0"), op("Less", "pick_top_k", C + "v"))
        keep_k = op("Or", op("GreaterOrEqual", z, kth), op("Not", op("Unsqueeze", use_k, C + "ax1")))
        z = op("Where", keep_k, z, C + "neg_inf")
    # softmax, as numpy: exp(z - max) / sum
    e = op("Exp", op("Sub", z, reduce("ReduceMax", z, 1)))
    p = op("Div", e, reduce("ReduceSum", e, 1))
    if mode == "full":  # nucleus: keep a token while the mass before it (descending, stable) is below top_p
        sorted_p, order = op("TopK", p, C + "vocab", outputs=2, axis=1, largest=1, sorted=1)
        cum = op("CumSum", sorted_p, C + "i1")
        keep_sorted = op("Cast", op("Less", op("Sub", cum, sorted_p), op("Unsqueeze", "pick_top_p", C + "ax1")), to=TensorProto.DOUBLE)
        keep_p = op("Greater", op("ScatterElements", op("Mul", p, C + "zero"), order, keep_sorted, axis=1), C + "zero")
        use_p = op("Less", "pick_top_p", C + "one")
        p = op("Where", op("Or", keep_p, op("Not", op("Unsqueeze", use_p, C + "ax1"))), p, C + "zero")
    # inverse CDF: the number of CDF entries below u * total, at most V - 1
    cdf = op("CumSum", p, C + "i1")
    total = op("Slice", cdf, C + "ax_last", C + "big", C + "ax1")                                # (B, 1)
    below = op("Less", cdf, op("Mul", op("Unsqueeze", "pick_u", C + "ax1"), total))
    index = op("Min", reduce("ReduceSum", op("Cast", below, to=TensorProto.INT64), 0), C + "v_last")
    nodes.append(helper.make_node("Where", [is_greedy, greedy, index], [TOKEN], name="pick/token"))
    return nodes, consts


__all__ = ["MODES", "TOKEN", "fusable", "fuse", "fused_name", "fused_spec", "mode_for", "pick_inputs"]
