"""TensorRT / TensorRT-RTX backend: runs the engines ``genctl build --target tensorrt[-rtx]`` wrote.

One backend class for both modules (``TensorRTRTXBackend`` only names its flavor; what differs is
the table in ``genctl.trt.flavors``). One ``ICudaEngine`` + execution context per graph,
deserialized with ``Runtime``. The build record is chosen by precision, module and the *running*
platform: an engine is never loaded on another GPU or module version (TensorRT-RTX engines on any
GPU of the capability list they were built for); the error says to rebuild. TensorRT-RTX without
a GPU, or on a GPU outside its compute capabilities (9.0: H100/H200), is refused in one line.

Loading checks what the engine really has: its I/O tensors (``num_io_tensors``,
``get_tensor_name``, ``get_tensor_mode``) against the GraphSpec and each input's profile
(``get_tensor_profile_shape``) against the build record; every TensorRT call that reports failure
by a return value (``set_input_shape``, ``set_tensor_address``, ``create_execution_context``,
``infer_shapes``, ``execute_async_v3``) is checked, so a bad shape is a one-line error here
rather than an unrelated torch error later.

Memory is device-resident: values are torch CUDA tensors (torch allocates; TensorRT only sees
addresses, kept 256-byte aligned), so a loop's fed-back state (diffusion x_t, RNN hidden state,
KV cache) never visits the host. Every call runs on the backend's own CUDA stream, and all of
genctl's torch work for this backend (uploads, row compaction, downloads) runs on that same
stream, so nothing needs a host synchronization but the final download (and ``close()``).

CUDA graphs: when a graph is called twice in a row with the same input shapes (a diffusion step,
an RNN step), the second call captures it, as trtexec does: shapes and addresses of static
buffers are set first, one plain enqueue flushes TensorRT's deferred work, and only
``execute_async_v3`` runs inside ``torch.cuda.graph(..., capture_error_mode="thread_local")``.
Later calls with those shapes copy their inputs into the static buffers and replay it. Outputs are
cloned out of the static buffers, so callers get fresh tensors. A capture that fails turns capture
off for that graph (after synchronizing the stream) and the backend carries on with plain
enqueues; ``cuda_graphs=False`` turns it off altogether.

Integer inputs are converted at the boundary to the dtype the engine declares: TensorRT 10+ keeps
ONNX int64 I/O as INT64, older parsers cast to INT32; either way the feed is cast to
``engine.get_tensor_dtype`` (values are class/token indices, far inside int32) and outputs are cast
back to the GraphSpec's dtype.

The capture policy, record selection, I/O comparison and the refusals are tested on CPU; loading
and running engines (through the quality gate, against ONNX Runtime) under ``pytest -m gpu``
(tests/test_tensorrt.py, tests/test_tensorrt_rtx.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable, BundleError
from genctl.io import sha256_file
from genctl.runtime.backends.base import Backend, TorchValues
from genctl.trt.cache import mismatch
from genctl.trt.flavors import flavor
from genctl.trt.platform import current_platform, io_mismatch, make_logger
from genctl.trt.profiles import check_shapes

ALIGNMENT = 256  # bytes: TensorRT's I/O address alignment


def select_record(bundle: Bundle, precision: str, platform) -> dict:
    """The build record for ``precision`` on this platform and module (gated ones first), or a clear error."""
    fl = flavor(platform.runtime)
    records = [r for r in bundle.manifest.get("engines", {}).values()
               if r.get("precision") == precision and r.get("platform", {}).get("runtime", "tensorrt") == fl.target]
    fix = f"run 'genctl build {bundle.path} --target {fl.target} --precision {precision}'" + ("" if fl.aot else " on this machine")
    if not records:
        raise BundleError(f"{fl.label} engines ({precision}) of bundle '{bundle.path}'", got="none built",
                          expected="a build record in the manifest", fix=fix)
    usable = [r for r in records if mismatch(r, platform) is None]
    if not usable:
        raise BackendUnavailable(f"{fl.label} engines ({precision}) of bundle '{bundle.path}'",
                                 got=f"built for another platform: {mismatch(records[-1], platform)}",
                                 expected=f"engines built for this GPU and {fl.label} version", fix=fix)
    by_status = {s: [r for r in usable if r.get("status") == s] for s in ("passed", "built")}
    return (by_status["passed"] or by_status["built"] or usable)[-1]


class CapturePolicy:
    """When to capture a CUDA graph, and which capture to replay.

    A call is captured when it repeats the previous call's graph and input shapes (a loop with
    fixed shapes). A graph keeps one capture: TensorRT ties a capture to the execution context's
    shapes at capture time, so a plain enqueue of that graph at other shapes drops it. A graph
    whose capture failed is never captured again.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.last: tuple | None = None
        self.failed: dict[str, str] = {}  # graph -> why its capture failed
        self.captured: dict[str, tuple[tuple, object]] = {}  # graph -> (key, capture)
        self.captures = self.replays = 0

    def lookup(self, key: tuple):
        """The capture for ``key`` = (graph, input shapes), or None."""
        hit = self.captured.get(key[0])
        if hit is None or hit[0] != key:
            return None
        self.replays += 1
        return hit[1]

    def plain_call(self, key: tuple) -> bool:
        """Note a call that runs without a capture; True when it should be captured now."""
        self.captured.pop(key[0], None)  # the context is about to run at these shapes
        repeat, self.last = key == self.last, key
        return self.enabled and repeat and key[0] not in self.failed

    def add(self, key: tuple, capture: object) -> None:
        self.captured[key[0]] = (key, capture)
        self.captures += 1

    def fail(self, graph: str, reason: str) -> None:
        self.failed[graph] = reason


@dataclass
class Captured:
    """A captured CUDA graph with the static buffers its addresses point at."""

    graph: object  # torch.cuda.CUDAGraph
    inputs: dict
    outputs: dict


class TensorRTBackend(Backend):
    name = "tensorrt"  # also the flavor (genctl.trt.flavors.FLAVORS)
    precisions = ("fp32", "fp16")

    def __init__(self, bundle: Bundle, precision: str = "fp32", record: dict | None = None,
                 engine_dir: Path | None = None, cuda_graphs: bool = True):
        super().__init__(bundle, precision)
        self.flavor = flavor(self.name)
        trt = self.flavor.load()
        self.platform = current_platform(self.name)  # TensorRT-RTX: refuses a GPU it cannot run on
        import torch

        self.torch, self.trt = torch, trt
        self.record = record or select_record(bundle, precision, self.platform)
        self.logger = make_logger(trt)  # kept: TensorRT holds a pointer to it
        self.runtime = trt.Runtime(self.logger)
        self.engines, self.contexts = {}, {}
        for name in bundle.graphs:
            entry = self.record["graphs"][name]
            path = Path(engine_dir) / Path(entry["file"]).name if engine_dir else bundle.file(entry["file"])
            self.engines[name] = self._load(path, entry["sha256"], name)
            self.contexts[name] = self.engines[name].create_execution_context()
            if self.contexts[name] is None:
                self._fail(name, "create_execution_context returned None", "an execution context (enough GPU memory)")
        self.stream = torch.cuda.Stream()
        self.values = StreamValues("cuda", self.stream)
        self.capture = CapturePolicy(enabled=cuda_graphs)

    def _fix(self) -> str:
        return f"rerun 'genctl build {self.bundle.path} --target {self.name} --precision {self.precision}'"

    def _fail(self, graph: str, got: str, expected: str):
        errors = "; ".join(self.logger.errors[-2:])
        raise BackendUnavailable(f"{self.flavor.label} engine '{graph}'", got=got + (f" ({errors[:200]})" if errors else ""),
                                 expected=expected)

    def _load(self, path: Path, digest: str, graph: str):
        if not path.is_file() or sha256_file(path) != digest:
            raise BundleError(f"{self.flavor.label} engine '{path}'", got="missing or changed since the build",
                              expected=f"sha256 {digest[:12]}… from the manifest", fix=self._fix())
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendUnavailable(f"{self.flavor.label} engine '{path}'",
                                     got=f"an engine this runtime cannot deserialize ({'; '.join(self.logger.errors)[:200]})",
                                     expected=f"an engine built with {self.flavor.label} {self.platform.tensorrt}", fix=self._fix())
        self._check_io(engine, graph)
        return engine

    def _check_io(self, engine, graph: str) -> None:
        """The engine's I/O tensors and input profiles must be the GraphSpec's and the build record's."""
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == self.trt.TensorIOMode.INPUT]
        diff = io_mismatch(self.bundle.graphs[graph], inputs, [n for n in names if n not in inputs])
        for name in inputs if diff is None else ():
            built = [list(s) for s in engine.get_tensor_profile_shape(name, 0)]
            recorded = [self.record["profiles"][graph][name][sel] for sel in ("min", "opt", "max")]
            if built != recorded:
                diff = f"input '{name}' profile {built} (build record {recorded})"
        if diff:
            raise BundleError(f"{self.flavor.label} engine '{graph}'", got=diff, expected="the graph and profile it was recorded with", fix=self._fix())

    def _torch_dtype(self, engine, name: str):
        """The torch dtype of an engine tensor (``trt.nptype`` maps TensorRT's DataType to numpy)."""
        np_dtype = np.dtype(self.trt.nptype(engine.get_tensor_dtype(name)))
        return self.torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype

    def _run_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._run_values_impl(graph, {k: self.values.put(v) for k, v in feeds.items()})
        return {t.name: self.values.get(out[t.name]) for t in self.bundle.graphs[graph].outputs}

    def _run_values_impl(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        torch, spec = self.torch, self.bundle.graphs[graph]
        shapes = {t.name: tuple(feeds[t.name].shape) for t in spec.inputs}
        check_shapes(self.record["profiles"][graph], shapes, graph)
        key = (graph, tuple(shapes.values()))
        with torch.cuda.stream(self.stream):
            captured = self.capture.lookup(key)
            if captured is not None:
                for name, buf in captured.inputs.items():
                    buf.copy_(feeds[name])  # casts int64 feeds to an INT32 engine input on the device
                captured.graph.replay()
                return self._outputs(spec, {k: v.clone() for k, v in captured.outputs.items()})
            capture_now = self.capture.plain_call(key)
            inputs = {t.name: aligned(feeds[t.name].to(self._torch_dtype(self.engines[graph], t.name)))
                      for t in spec.inputs}
            outputs = self._bind(graph, inputs)
            self._execute(graph)
            if capture_now:
                self._capture(graph, key, inputs)
            return self._outputs(spec, outputs)

    def _bind(self, graph: str, inputs: dict, outputs: dict | None = None) -> dict:
        """Set shapes and addresses of ``inputs`` and ``outputs`` (allocated when None); checked."""
        engine, ctx = self.engines[graph], self.contexts[graph]
        for name, value in inputs.items():
            if not ctx.set_input_shape(name, tuple(value.shape)):
                self._fail(graph, f"set_input_shape('{name}', {tuple(value.shape)}) refused", "a shape inside the engine's profile")
        missing = ctx.infer_shapes()
        if missing:
            self._fail(graph, f"inputs without a shape: {missing}", "every input shape set")
        if outputs is None:
            outputs = {name: self.torch.empty(tuple(ctx.get_tensor_shape(name)), device="cuda",
                                              dtype=self._torch_dtype(engine, name))
                       for name in self.bundle.graphs[graph].output_names}
        for name, value in {**inputs, **outputs}.items():
            if value.data_ptr() % ALIGNMENT or not ctx.set_tensor_address(name, value.data_ptr()):
                self._fail(graph, f"set_tensor_address('{name}') refused", f"a {ALIGNMENT}-byte aligned device address")
        return outputs

    def _execute(self, graph: str) -> None:
        if not self.contexts[graph].execute_async_v3(self.stream.cuda_stream):
            self._fail(graph, "execute_async_v3 failed", "a successful enqueue")

    def _capture(self, graph: str, key: tuple, inputs: dict) -> None:
        """Capture ``graph`` at these shapes into a CUDA graph over static copies of the buffers."""
        torch = self.torch
        static_in = {k: aligned(v.clone()) for k, v in inputs.items()}
        try:
            static_out = self._bind(graph, static_in)  # shapes and addresses before the capture
            self._execute(graph)  # flush TensorRT's deferred work (shape-dependent setup) before capturing
            cuda_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(cuda_graph, stream=self.stream, capture_error_mode="thread_local"):
                self._execute(graph)  # nothing but the enqueue inside the capture
        except Exception as exc:  # an engine TensorRT cannot capture: plain enqueues from now on
            self.stream.synchronize()  # leave no half-captured work behind on the stream
            self.capture.fail(graph, f"{type(exc).__name__}: {exc}")
            return
        self.capture.add(key, Captured(cuda_graph, static_in, static_out))

    def _outputs(self, spec, outputs: dict) -> dict:
        """Outputs in the GraphSpec's dtypes (an INT32 engine output goes back to int64)."""
        torch = self.torch
        return {t.name: outputs[t.name].to(getattr(torch, t.dtype)) for t in spec.outputs}

    def describe(self) -> str:
        graphs = "+cudagraphs" if self.capture.enabled else ""
        return f"{self.name}[{self.platform.gpu}]{graphs} {self.precision}"

    def close(self) -> None:
        if getattr(self, "stream", None) is not None:
            self.stream.synchronize()  # no enqueued work may outlive the contexts and buffers it uses
        self.capture.captured.clear()  # CUDA graphs before the contexts their kernels belong to
        self.contexts.clear()
        self.engines.clear()


class TensorRTRTXBackend(TensorRTBackend):
    """TensorRT-RTX engines (built ahead of time, also without a GPU) on a GPU of compute
    capability 8.0, 8.6, 8.9 or 12.x; everything else is :class:`TensorRTBackend`."""

    name = "tensorrt-rtx"


def aligned(value):
    """``value`` contiguous at a 256-byte aligned address (a view into a larger block may not be)."""
    value = value.contiguous()
    return value if value.data_ptr() % ALIGNMENT == 0 else value.clone()


class StreamValues(TorchValues):
    """Torch tensors on the GPU, every operation on ``stream`` (the one TensorRT enqueues on), so
    work is ordered without host synchronization and the caching allocator never hands a block
    still in use on one stream to another."""

    def __init__(self, device: str, stream):
        super().__init__(device)
        self.stream = stream

    def put(self, value):
        with self.torch.cuda.stream(self.stream):
            return super().put(value)

    def get(self, value) -> np.ndarray:
        with self.torch.cuda.stream(self.stream):
            return super().get(value)

    def take_rows(self, value, axis: int, keep: np.ndarray):
        with self.torch.cuda.stream(self.stream):
            return super().take_rows(value, axis, keep)
