"""TensorRT backend: runs the engines ``genctl build --target tensorrt`` wrote into the bundle.

One ``ICudaEngine`` + execution context per graph, deserialized with ``trt.Runtime``. The build
record is chosen by precision and by the *running* platform: an engine is never loaded on another
GPU or TensorRT version (the cache key says what it was built for, and the error says to rebuild).

Memory is device-resident: values are torch CUDA tensors (torch allocates; TensorRT only sees
addresses), so a loop's fed-back state (diffusion x_t, RNN hidden state, KV cache) never visits
the host. Every call is ``set_input_shape`` + ``set_tensor_address`` + ``execute_async_v3`` on
the backend's own CUDA stream, and all of genctl's torch work for this backend (uploads, row
compaction, downloads) runs on that same stream, so nothing needs a host synchronization but the
final download.

CUDA graphs: when a graph is called twice in a row with the same input shapes (a diffusion step,
an RNN step), the second call captures it (``torch.cuda.graph`` around ``execute_async_v3``,
after one plain enqueue with the static buffers, as TensorRT requires) and later calls with those
shapes copy their inputs into the static buffers and replay it: one launch instead of TensorRT's
per-layer launches. Outputs are cloned out of the static buffers, so callers get fresh tensors.
A capture that fails (an engine TensorRT cannot capture) turns capture off for that graph and the
backend carries on with plain enqueues; ``cuda_graphs=False`` turns it off altogether.

Integer inputs are converted at the boundary to the dtype the engine declares: TensorRT 10 keeps
ONNX int64 I/O as INT64, older parsers cast to INT32; either way the feed is cast to
``engine.get_tensor_dtype`` (values are class/token indices, far inside int32) and outputs are cast
back to the GraphSpec's dtype.

None of this has run here: the development machines have no GPU and cannot install TensorRT.
The capture policy (``CapturePolicy``) and record selection are tested on CPU; the rest is under
``pytest -m gpu`` (tests/test_tensorrt.py).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from genctl.optimize.cache import mismatch
from genctl.optimize.profiles import check_shapes
from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable, BundleError
from genctl.io import sha256_file
from genctl.runtime.backends.base import Backend, TorchValues


def select_record(bundle: Bundle, precision: str, platform) -> dict:
    """The passed build record for ``precision`` on this platform, or a clear error."""
    records = [r for r in bundle.manifest.get("engines", {}).values() if r.get("precision") == precision]
    fix = f"run 'genctl build {bundle.path} --target tensorrt --precision {precision}' on this machine"
    if not records:
        raise BundleError(f"TensorRT engines ({precision}) of bundle '{bundle.path}'", got="none built",
                          expected="a build record in the manifest", fix=fix)
    usable = [r for r in records if mismatch(r, platform) is None]
    if not usable:
        raise BackendUnavailable(f"TensorRT engines ({precision}) of bundle '{bundle.path}'",
                                 got=f"built for another platform: {mismatch(records[-1], platform)}",
                                 expected="engines built with this GPU and TensorRT version", fix=fix)
    passed = [r for r in usable if r.get("status") == "passed"]
    return (passed or usable)[-1]


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
    name = "tensorrt"
    precisions = ("fp32", "fp16")

    def __init__(self, bundle: Bundle, precision: str = "fp32", record: dict | None = None,
                 engine_dir: Path | None = None, cuda_graphs: bool = True):
        from genctl.optimize.tensorrt import current_platform, import_tensorrt

        super().__init__(bundle, precision)
        trt = import_tensorrt()
        import torch

        self.torch, self.trt = torch, trt
        self.platform = current_platform()
        self.record = record or select_record(bundle, precision, self.platform)
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines, self.contexts = {}, {}
        for name in bundle.graphs:
            entry = self.record["graphs"][name]
            path = Path(engine_dir) / Path(entry["file"]).name if engine_dir else bundle.file(entry["file"])
            self.engines[name] = self._load(path, entry["sha256"])
            self.contexts[name] = self.engines[name].create_execution_context()
        self.stream = torch.cuda.Stream()
        self.values = StreamValues("cuda", self.stream)
        self.capture = CapturePolicy(enabled=cuda_graphs)

    def _load(self, path: Path, digest: str):
        fix = f"rerun 'genctl build {self.bundle.path} --target tensorrt --precision {self.precision}'"
        if not path.is_file() or sha256_file(path) != digest:
            raise BundleError(f"TensorRT engine '{path}'", got="missing or changed since the build",
                              expected=f"sha256 {digest[:12]}… from the manifest", fix=fix)
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:  # TensorRT logs the reason (version/platform) above
            raise BackendUnavailable(f"TensorRT engine '{path}'", got="an engine this TensorRT cannot deserialize",
                                     expected=f"an engine built with TensorRT {self.platform.tensorrt}", fix=fix)
        return engine

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
            inputs = {t.name: feeds[t.name].to(self._torch_dtype(self.engines[graph], t.name)).contiguous()
                      for t in spec.inputs}
            outputs = self._enqueue(graph, inputs)
            if capture_now:
                self._capture(graph, key, inputs)
            return self._outputs(spec, outputs)

    def _enqueue(self, graph: str, inputs: dict, outputs: dict | None = None) -> dict:
        """Bind ``inputs`` (and ``outputs``, allocated when None) by address and enqueue on the stream."""
        engine, ctx = self.engines[graph], self.contexts[graph]
        for name, value in inputs.items():
            ctx.set_input_shape(name, tuple(value.shape))
            ctx.set_tensor_address(name, value.data_ptr())
        if outputs is None:
            outputs = {name: self.torch.empty(tuple(ctx.get_tensor_shape(name)), device="cuda",
                                              dtype=self._torch_dtype(engine, name))
                       for name in self.bundle.graphs[graph].output_names}
        for name, value in outputs.items():
            ctx.set_tensor_address(name, value.data_ptr())
        if not ctx.execute_async_v3(self.stream.cuda_stream):
            raise BackendUnavailable(f"TensorRT engine '{graph}'", got="execute_async_v3 failed",
                                     expected="a successful enqueue (see the TensorRT log)")
        return outputs

    def _capture(self, graph: str, key: tuple, inputs: dict) -> None:
        """Capture ``graph`` at these shapes into a CUDA graph over static copies of the buffers."""
        torch = self.torch
        static_in = {k: v.clone() for k, v in inputs.items()}
        try:
            static_out = self._enqueue(graph, static_in)  # flush TensorRT's deferred work before capture
            cuda_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(cuda_graph, stream=self.stream):
                self._enqueue(graph, static_in, static_out)
        except Exception as exc:  # an engine TensorRT cannot capture: plain enqueues from now on
            self.capture.fail(graph, f"{type(exc).__name__}: {exc}")
            return
        self.capture.add(key, Captured(cuda_graph, static_in, static_out))

    def _outputs(self, spec, outputs: dict) -> dict:
        """Outputs in the GraphSpec's dtypes (an INT32 engine output goes back to int64)."""
        torch = self.torch
        return {t.name: outputs[t.name].to(getattr(torch, t.dtype)) for t in spec.outputs}

    def describe(self) -> str:
        graphs = "+cudagraphs" if self.capture.enabled else ""
        return f"tensorrt[{self.platform.gpu}]{graphs} {self.precision}"

    def close(self) -> None:
        self.capture.captured.clear()  # CUDA graphs before the contexts their kernels belong to
        self.contexts.clear()
        self.engines.clear()


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
