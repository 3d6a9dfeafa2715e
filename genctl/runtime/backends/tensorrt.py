"""TensorRT backend: runs the engines ``genctl build --target tensorrt`` wrote into the bundle.

One ``ICudaEngine`` + execution context per graph, deserialized with ``trt.Runtime``. The build
record is chosen by precision and by the *running* platform: an engine is never loaded on another
GPU or TensorRT version (the cache key says what it was built for, and the error says to rebuild).

Per call: feeds are copied to CUDA tensors (torch allocates; TensorRT only sees addresses),
``set_input_shape`` + ``set_tensor_address`` for every I/O tensor, ``execute_async_v3`` on one
CUDA stream, then outputs come back to the host. Integer inputs are converted at the boundary to
the dtype the engine declares: TensorRT 10 keeps ONNX int64 I/O as INT64, older parsers cast to
INT32; either way the feed is cast to ``engine.get_tensor_dtype`` (values are class/token indices,
far inside int32) and outputs are cast back to the GraphSpec's dtype.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from genctl.build.cache import mismatch
from genctl.build.profiles import check_shapes
from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable, BundleError
from genctl.io import sha256_file
from genctl.runtime.backends.base import Backend


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


class TensorRTBackend(Backend):
    name = "tensorrt"
    precisions = ("fp32", "fp16")

    def __init__(self, bundle: Bundle, precision: str = "fp32", record: dict | None = None,
                 engine_dir: Path | None = None):
        from genctl.build.tensorrt import current_platform, import_tensorrt

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

    def _dtype(self, engine, name: str):
        """numpy and torch dtypes of an engine tensor (``trt.nptype`` maps TensorRT's DataType)."""
        np_dtype = np.dtype(self.trt.nptype(engine.get_tensor_dtype(name)))
        return np_dtype, self.torch.from_numpy(np.empty(0, dtype=np_dtype)).dtype

    def _run_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        spec, engine, ctx = self.bundle.graphs[graph], self.engines[graph], self.contexts[graph]
        check_shapes(self.record["profiles"][graph], {k: v.shape for k, v in feeds.items()}, graph)
        keep = []  # device tensors must outlive the enqueue
        with torch.cuda.stream(self.stream):
            for t in spec.inputs:
                np_dtype, _ = self._dtype(engine, t.name)
                host = torch.from_numpy(np.ascontiguousarray(feeds[t.name], dtype=np_dtype))
                dev = host.to("cuda", non_blocking=False)
                ctx.set_input_shape(t.name, tuple(dev.shape))
                ctx.set_tensor_address(t.name, dev.data_ptr())
                keep.append(dev)
            outputs = {}
            for t in spec.outputs:
                _, torch_dtype = self._dtype(engine, t.name)
                shape = tuple(ctx.get_tensor_shape(t.name))
                outputs[t.name] = torch.empty(shape, dtype=torch_dtype, device="cuda")
                ctx.set_tensor_address(t.name, outputs[t.name].data_ptr())
            if not ctx.execute_async_v3(self.stream.cuda_stream):
                raise BackendUnavailable(f"TensorRT engine '{graph}'", got="execute_async_v3 failed",
                                         expected="a successful enqueue (see the TensorRT log)")
        self.stream.synchronize()
        return {t.name: outputs[t.name].cpu().numpy().astype(t.dtype, copy=False) for t in spec.outputs}

    def describe(self) -> str:
        return f"tensorrt[{self.platform.gpu}] {self.precision}"

    def close(self) -> None:
        self.contexts.clear()
        self.engines.clear()
