"""The tensor contract of a bundle's Triton ``<family>_generate`` model, and its conversions.

One contract, read by the exporter (``config.pbtxt``), by the model inside Triton (arrays -> genctl
``Request`` -> arrays) and by clients (tests, the benchmark). Every row of a Triton batch is one genctl
request; Triton's dynamic batcher stacks concurrent requests and the model runs all of them in one
``Generator.generate_many`` call, merged across conditions as ``genctl serve`` does.

Inputs (each with Triton's leading batch dim; all optional):

- each condition by its manifest name: a text prompt BYTES ``[1]``; other kinds the dtype and per-row
  shape of their one graph input (categorical INT64 ``[1]``, continuous FP32 ``[1]``, vector FP32 ``[D]``).
  Missing means what ``genctl generate`` does without ``--cond`` (every class of a categorical);
- ``seed`` INT64 ``[1]`` (0), ``n`` INT32 ``[1]`` samples (1);
- each sampler control by name: float FP32, int INT32, str BYTES ``[1]`` (missing: the manifest default);
- ``prefix`` BYTES ``[1]`` for text models.

Outputs: ``samples`` FP32 ``[rows*n, C, H, W]`` (images) or ``texts`` BYTES ``[rows*n]`` + ``tokens`` INT64
``[rows*n, T]`` (PAD after the end), and ``rows`` BYTES ``[rows]``: the condition row labels.
FP32 values are read back as the shortest decimal that round-trips in float32 (``0.8``, not
``0.800000011920929``), so a control sent as FP32 is the number the user typed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from genctl.bundle import Bundle
from genctl.errors import ConditionError, GenctlError

TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
         "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "bytes": "TYPE_STRING"}
WIRE = {"float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32", "bool": "BOOL", "uint8": "UINT8",
        "int8": "INT8", "bytes": "BYTES"}  # the KServe v2 names clients use
_CONTROL_TYPES = {float: "float32", int: "int32", str: "bytes"}


@dataclass(frozen=True)
class Port:
    """One input or output of the generate model: name, dtype (numpy name or ``bytes``), per-row dims."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    role: str  # condition | seed | n | control | prefix | output
    optional: bool = True

    @property
    def wire(self) -> str:
        return WIRE[self.dtype]

    def array(self, values: Sequence[Any]) -> np.ndarray:
        """A batch of per-row values as the array a client sends (one row per value)."""
        if self.dtype == "bytes":
            return np.array([[v.encode() if isinstance(v, str) else v] for v in values], dtype=object)
        arr = np.asarray(values, dtype=self.dtype)
        return arr.reshape((len(values),) + tuple(d if d > 0 else -1 for d in self.dims))


def inputs(bundle: Bundle, sampler) -> list[Port]:
    """The generate model's inputs for ``bundle`` (``sampler``: its Sampler, for the controls)."""
    ports = [_condition_port(c) for c in bundle.conditions.conditions]
    ports += [Port("seed", "int64", (1,), "seed"), Port("n", "int32", (1,), "n")]
    for control in sampler.controls:
        if control.type not in _CONTROL_TYPES:
            raise GenctlError(f"Control '{control.name}'", got=f"type {control.type.__name__}", expected="float, int or str (FP32, INT32, BYTES)")
        ports.append(Port(control.name, _CONTROL_TYPES[control.type], (1,), "control"))
    if "prefix" in sampler.inputs:
        ports.append(Port("prefix", "bytes", (1,), "prefix"))
    names = [p.name for p in ports]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise GenctlError(f"Triton input '{clash[0]}'", got="a condition and a control (or seed/n) of that name",
                          expected="distinct input names", fix="rename the condition")
    return ports


def outputs(bundle: Bundle) -> list[Port]:
    if bundle.output_kind == "text":
        return [Port("texts", "bytes", (-1,), "output"), Port("tokens", "int64", (-1, -1), "output"),
                Port("rows", "bytes", (-1,), "output")]
    shape = bundle.info.get("output", {}).get("shape")
    dims = tuple(int(d) for d in shape) if shape else (-1, -1, -1)
    return [Port("samples", "float32", (-1,) + dims, "output"), Port("rows", "bytes", (-1,), "output")]


def _condition_port(cond) -> Port:
    if cond.takes_prompts:
        return Port(cond.name, "bytes", (1,), "condition")
    specs = cond.specs()
    if len(specs) != 1 or specs[0].dtype not in TYPES:
        raise GenctlError(f"Condition '{cond.name}' ({cond.kind})", got=f"{len(specs)} graph inputs",
                          expected="one numeric graph input, which becomes its Triton input")
    dims = tuple(d if isinstance(d, int) else -1 for d in specs[0].shape[1:]) or (1,)
    return Port(cond.name, specs[0].dtype, dims, "condition")


# ------------------------------------------------------------------------------ inside the model

def human_float(x: Any) -> float:
    """An FP32 wire value as the shortest decimal that round-trips in float32 (NaN and inf kept)."""
    return float(str(np.float32(x)))


def _scalar(port: Port, arr: np.ndarray) -> Any:
    value = arr.reshape(-1)[0] if arr.size == 1 else arr
    if port.dtype == "bytes":
        return bytes(value) if isinstance(value, (bytes, np.bytes_)) else value
    if port.dtype.startswith("float"):
        return human_float(value)
    return int(value)


def _decode(port: Port, value: Any) -> str:
    try:
        return bytes(value).decode("utf-8")
    except (UnicodeDecodeError, TypeError):
        raise GenctlError(f"Input '{port.name}'", got="bytes that are not UTF-8", expected="UTF-8 text") from None


def row_kwargs(ports: list[Port], arrays: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    """Row ``i`` of a Triton request's arrays as ``Generator.request`` keyword arguments."""
    conditions: dict[str, Any] = {}
    kw: dict[str, Any] = {"seed": 0, "n": 1}
    for port in ports:
        if port.name not in arrays:
            continue
        row = arrays[port.name][i]
        if port.role == "condition":
            conditions[port.name] = [tuple(human_float(v) for v in row.reshape(-1))] if port.dims != (1,) else [_scalar(port, row)]
        elif port.dtype == "bytes" and port.role != "condition":
            kw[port.name] = _decode(port, _scalar(port, row))
        else:
            kw[port.name] = _scalar(port, row)
    kw["conditions"] = conditions or None
    return kw


_FLAG = re.compile(r"Control (?:--([a-z0-9-]+)|'([^']+)')")


def as_input_error(exc: GenctlError) -> GenctlError:
    """A message naming a CLI flag (``--seed``, ``-n (...)``, ``Control --top-k``) renamed to the Triton input."""
    subject = exc.subject
    if subject in ("--seed", "--prefix"):
        name = subject[2:]
    elif subject.startswith("-n "):
        name = "n"
    elif m := _FLAG.fullmatch(subject):
        name = m[1].replace("-", "_") if m[1] else m[2]
    else:
        return exc
    return ConditionError(f"Input '{name}'", got=exc.got, expected=exc.expected, fix=exc.fix)


def requests(gen, ports: list[Port], arrays: dict[str, np.ndarray], max_rows: int) -> list:
    """One Triton request (``arrays``: its input tensors, batch dim first) -> genctl ``Request`` per row.

    Raises a one-line ``GenctlError`` for anything wrong; rows of one request must give the same number
    of samples (Triton's outputs are one array per request)."""
    batch = {len(a) for a in arrays.values()}
    if len(batch) > 1:
        raise GenctlError("Inputs", got=f"batch sizes {sorted(batch)}", expected="the same batch size in every input")
    out = []
    for i in range(batch.pop() if batch else 1):
        kw = row_kwargs(ports, arrays, i)
        n = kw.pop("n")
        if not 0 < n <= max_rows:
            raise GenctlError("Input 'n' (samples per condition)", got=n, expected=f"an integer in [1, {max_rows}]")
        try:
            req = gen.request(kw.pop("conditions"), n=n, seed=kw.pop("seed"), **kw)
        except GenctlError as exc:
            raise as_input_error(exc) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise GenctlError("Inputs", got=f"an unusable value ({exc})", expected="values of the model's config") from None
        if req.total > max_rows:
            raise GenctlError("Request rows (condition rows x n)", got=req.total, expected=f"at most {max_rows}", fix="split the request")
        out.append(req)
    if len({r.total for r in out}) > 1:
        raise GenctlError("Input 'n'", got=f"rows asking for {sorted({r.total for r in out})} samples in one request",
                          expected="the same n (and condition rows) in every row of one request", fix="send separate requests")
    return out


def output_arrays(bundle: Bundle, samples: list) -> dict[str, np.ndarray]:
    """The ``Samples`` of one Triton request's rows as its output tensors (batch dim first)."""
    rows = np.array([[r.encode() for r in s.rows] for s in samples], dtype=object)
    if bundle.output_kind != "text":
        return {"samples": np.stack([s.data for s in samples]).astype(np.float32, copy=False), "rows": rows}
    pad = int(bundle.info.get("output", {}).get("special_tokens", {}).get("pad", 0))
    width = max(s.data.shape[1] for s in samples)
    tokens = np.full((len(samples), samples[0].data.shape[0], width), pad, dtype=np.int64)
    for i, s in enumerate(samples):
        tokens[i, :, :s.data.shape[1]] = s.data
    texts = np.array([[t.encode() for t in s.texts] for s in samples], dtype=object)
    return {"texts": texts, "tokens": tokens, "rows": rows}
