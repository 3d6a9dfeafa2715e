"""ONNX Runtime variants of an exported graph: ``opt``, ``fp16`` and ``int8``.

- ``opt``  — ORT's graph optimizations (constant folding, node fusions such as Gemm+Relu →
  FusedGemm) applied once and saved with ``SessionOptions.optimized_model_filepath``, so a session
  starts without redoing them. Saved at the *extended* level: the *all* level adds CPU-specific
  layout transforms (NCHWc) that ORT documents as tied to the machine that saved them. The fusions
  are chosen for one execution provider (the CPU provider's ``FusedConv`` takes a LeakyRelu
  activation the CUDA provider refuses), so the graph is optimised with the provider it will run
  on — CUDA where a GPU is usable, else CPU (``runtime.devices.optimization_provider``) — and that
  provider is recorded; the backend refuses to load it under another one (see
  ``runtime.backends.onnxruntime``).
- ``fp16`` — every float initializer and op in float16 with float32 I/O kept (``keep_io_types``),
  via ``onnxruntime.transformers.float16`` (ships with onnxruntime, no extra dependency). Meant for
  GPUs: ORT's CPU provider runs few ops in fp16 and inserts casts around the rest.
- ``int8`` — dynamic quantization (``quantize_dynamic``): int8 weights, activations quantized per
  call from their observed range; for CPUs. ConvTranspose has no integer kernel and stays fp32.
  On x86 CPUs without VNNI, ORT's u8s8 kernels add pairs of products in int16 and saturate;
  weights are then quantized to 7 bits (``reduce_range``), as ORT's quantization docs advise.
  The choice is made for the machine that builds and recorded in the provenance.
"""
from __future__ import annotations

import contextlib
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from genctl.errors import GenctlError
from genctl.logs import quiet

VARIANTS = ("opt", "fp16", "int8")


@dataclass(kw_only=True)
class Int8Options:
    per_channel: bool = True  # one scale per output channel: lower error than per-tensor, same CPU speed here
    weight_type: str = "qint8"  # "qint8" (signed, what MatMulInteger/ConvInteger prefer on x86) or "quint8"
    op_types: tuple[str, ...] = ()  # empty = every op ORT can quantize dynamically (MatMul, Gemm, Conv, Gather ...)
    reduce_range: bool | None = None  # 7-bit weights; None = on for x86 CPUs without VNNI (see module doc)

    def __post_init__(self) -> None:
        if self.weight_type not in ("qint8", "quint8"):
            raise GenctlError("int8 weight type", got=repr(self.weight_type), expected="'qint8' or 'quint8'")
        if self.reduce_range is None:
            self.reduce_range = needs_reduce_range()


def needs_reduce_range(machine: str | None = None, cpu_flags: set[str] | None = None) -> bool:
    """True on x86 CPUs without VNNI, where ORT's u8s8 int8 kernels can saturate.

    ``cpu_flags`` defaults to the flags in /proc/cpuinfo; where they cannot be read (macOS,
    Windows), an x86 CPU is assumed to lack VNNI: 7-bit weights are safe everywhere.
    """
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False  # ARM and others use kernels without the int16 pair sums
    if cpu_flags is None:
        cpu_flags = _cpu_flags()
    return not cpu_flags & {"avx512_vnni", "avx_vnni", "avx512vnni", "avxvnni"}


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def build_variant(src: Path, dst: Path, precision: str, int8: Int8Options | None = None,
                  provider: str = "CPUExecutionProvider") -> dict:
    """Write the ``precision`` variant of the graph ``src`` to ``dst``; returns its provenance.

    ``provider`` is the execution provider an ``opt`` graph is optimised for (and may only run on).
    """
    start = time.perf_counter()
    try:
        onnx.load(str(src), load_external_data=False)  # a replaced file: one line, not the parser's trace
    except DecodeError as exc:
        from genctl.bundle import unreadable_graph

        raise unreadable_graph(src, exc) from None
    if precision == "opt":
        info = _optimize(src, dst, provider)
    elif precision == "fp16":
        info = _to_fp16(src, dst)
    elif precision == "int8":
        info = _quantize(src, dst, int8 or Int8Options())
    else:
        raise GenctlError(f"ONNX Runtime variant '{precision}'", got="an unknown precision", expected=f"one of {list(VARIANTS)}")
    if not dst.is_file():
        raise GenctlError(f"Variant '{precision}' of '{src.name}'", got="no file written", expected=str(dst))
    info["seconds"] = round(time.perf_counter() - start, 3)
    return info


def _optimize(src: Path, dst: Path, provider: str) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(dst)
    opts.log_severity_level = 3
    providers = [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])
    ort.InferenceSession(str(src), sess_options=opts, providers=providers)
    return {"tool": f"onnxruntime {ort.__version__} optimized_model_filepath", "level": "extended",
            "provider": provider}


def _to_fp16(src: Path, dst: Path) -> dict:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    with quiet():
        model = convert_float_to_float16(model, keep_io_types=True)
    dropped = _drop_duplicate_nodes(model)
    onnx.save(model, str(dst))
    return {"tool": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True,
            "duplicate_casts_dropped": dropped}


def _drop_duplicate_nodes(model: onnx.ModelProto) -> int:
    """Remove repeated identical nodes that write the same output.

    The converter inserts one ``Cast`` per consumer of an fp32-only op's constant input, all named
    ``<input>_cast_to_fp32`` — invalid SSA that ORT refuses ("two nodes with same node name").
    They compute the same value, so the first one (which precedes every consumer) is kept.
    """
    seen: dict[tuple, bytes] = {}
    keep = []
    for node in model.graph.node:
        key = tuple(node.output)
        signature = node.SerializeToString()
        if key in seen and seen[key] == signature:
            continue
        seen.setdefault(key, signature)
        keep.append(node)
    dropped = len(model.graph.node) - len(keep)
    if dropped:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return dropped


def _quantize(src: Path, dst: Path, options: Int8Options) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    # The dynamo exporter stores value_info for initializers; the quantizer transposes Gemm weights
    # and its shape inference then trips over the stale entries. Shapes are re-inferred anyway.
    del model.graph.value_info[:]
    weight = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[options.weight_type]
    with quiet(), _root_log_level(logging.ERROR):  # "consider pre-processing" goes to the root logger
        quantize_dynamic(model, str(dst), weight_type=weight, per_channel=options.per_channel,
                         reduce_range=bool(options.reduce_range),
                         op_types_to_quantize=list(options.op_types) or None)
    quantized = sorted({n.op_type for n in onnx.load(str(dst), load_external_data=False).graph.node
                        if n.op_type in ("MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DequantizeLinear")})
    return {"tool": "onnxruntime.quantization.quantize_dynamic", **asdict(options), "op_types": list(options.op_types),
            "integer_ops": quantized}


@contextlib.contextmanager
def _root_log_level(level: int):
    root = logging.getLogger()
    saved = root.level
    root.setLevel(max(level, saved))
    try:
        yield
    finally:
        root.setLevel(saved)
