"""ONNX Runtime backend: one InferenceSession per graph, providers from what is really usable."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable
from genctl.runtime.backends.base import Backend
from genctl.runtime.devices import onnxruntime_providers


def import_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailable("Backend 'onnxruntime'", got="the package is not installed",
                                 expected="onnxruntime-gpu (Linux x86_64) or onnxruntime",
                                 fix="pip install onnxruntime-gpu") from None
    return ort


def session_options(threads: int = 0):
    ort = import_ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: no provider chatter on a normal run
    if threads:
        opts.intra_op_num_threads = threads
    return opts


def provider_options(bundle: Bundle, providers: list, precision: str) -> list:
    """Providers with options: the TensorRT EP caches its engines and timings inside the bundle.

    ``BUNDLE/engines/ort-trt`` holds them (TensorRT EP options ``trt_engine_cache_*`` and
    ``trt_timing_cache_*``) so the minutes-long engine build happens once per machine; a read-only
    bundle simply runs without the cache.
    """
    out: list = []
    for provider in providers:
        if provider != "TensorrtExecutionProvider":
            out.append(provider)
            continue
        options = {"trt_fp16_enable": precision == "fp16"}
        cache = bundle.path / "engines" / "ort-trt"
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError:
            cache = None
        if cache is not None:
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache),
                           trt_timing_cache_enable=True, trt_timing_cache_path=str(cache))
        out.append((provider, options))
    return out


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = ("fp32", "fp16", "int8", "opt")

    def __init__(self, bundle: Bundle, precision: str = "fp32", providers: list[str] | None = None):
        super().__init__(bundle, precision)
        ort = import_ort()
        _, usable = onnxruntime_providers()
        self.providers = providers or usable
        self.sessions = {}
        for name in bundle.graphs:
            path = bundle.graph_file(name, precision)
            self.sessions[name] = ort.InferenceSession(str(path), sess_options=session_options(),
                                                       providers=provider_options(bundle, self.providers, precision))

    def _run_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.bundle.graphs[graph]
        outputs = self.sessions[graph].run(spec.output_names, dict(feeds))
        return dict(zip(spec.output_names, outputs))

    def describe(self) -> str:
        short = [p.replace("ExecutionProvider", "") for p in self.sessions[next(iter(self.sessions))].get_providers()]
        return f"onnxruntime[{','.join(short)}]" + ("" if self.precision == "fp32" else f" {self.precision}")
