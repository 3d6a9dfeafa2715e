"""ONNX Runtime backend: one InferenceSession per graph, providers from what is really usable."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable
from genctl.runtime.backends.base import Backend, TorchValues
from genctl.runtime.devices import onnxruntime_providers


def import_ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailable("Backend 'onnxruntime'", got="the package is not installed",
                                 expected="onnxruntime-gpu (Linux x86_64) or onnxruntime",
                                 fix="pip install onnxruntime-gpu") from None
    return ort


def session_options(threads: int = 0, spin: bool = True):
    """``spin=False`` stops idle intra-op threads from busy-waiting: a server's event loop shares the cores."""
    ort = import_ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only: no provider chatter on a normal run
    if threads:
        opts.intra_op_num_threads = threads
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def provider_options(bundle: Bundle, providers: list, precision: str) -> list:
    """Providers with options: the CUDA EP without TF32 for fp32 graphs; the TensorRT EP caches its
    engines and timings inside the bundle.

    ``BUNDLE/engines/ort-trt`` holds them (TensorRT EP options ``trt_engine_cache_*`` and
    ``trt_timing_cache_*``) so the minutes-long engine build happens once per machine; a read-only
    bundle simply runs without the cache.
    """
    out: list = []
    for provider in providers:
        if provider == "CUDAExecutionProvider":  # fp32 means fp32 (no TF32), as for TensorRT engines
            out.append((provider, {"use_tf32": 0}) if precision in ("fp32", "opt") else provider)
            continue
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
    """One InferenceSession per graph. Single calls use ``session.run`` on numpy arrays.

    Loops use IO binding when a GPU provider runs the graphs (``io_binding=None``, the default):
    fed-back state (diffusion latent, RNN hidden state, KV cache) stays in device memory as torch
    tensors; ONNX Runtime allocates outputs on the device and hands them over through DLPack
    without a copy. On the CPU provider there is nothing to keep resident and binding costs Python
    calls (measured +150 µs per decode step on the 2-core box, BENCHMARKS.md), so it is off unless
    asked for with ``io_binding=True`` (the tests do, to run the same code path on CPU).
    """

    name = "onnxruntime"
    precisions = ("fp32", "fp16", "int8", "opt")

    def __init__(self, bundle: Bundle, precision: str = "fp32", providers: list[str] | None = None,
                 io_binding: bool | None = None, spin: bool = True):
        super().__init__(bundle, precision)
        ort = import_ort()
        _, usable = onnxruntime_providers()
        self.providers = providers or usable
        self.sessions = {}
        for name in bundle.graphs:
            path = bundle.graph_file(name, precision)
            self.sessions[name] = ort.InferenceSession(str(path), sess_options=session_options(spin=spin),
                                                       providers=provider_options(bundle, self.providers, precision))
        on_gpu = self.sessions[next(iter(self.sessions))].get_providers()[0] != "CPUExecutionProvider"
        if on_gpu if io_binding is None else io_binding:
            self.values = TorchValues("cuda" if on_gpu else "cpu")
            self.bindings = {name: sess.io_binding() for name, sess in self.sessions.items()}

    def _run_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.bundle.graphs[graph]
        outputs = self.sessions[graph].run(spec.output_names, dict(feeds))
        return dict(zip(spec.output_names, outputs))

    def _run_values_impl(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """IO binding: inputs bound by address; outputs allocated by ONNX Runtime on the device and
        taken over as torch tensors through DLPack (no copy)."""
        torch, device = self.values.torch, self.values.device
        from_dlpack = torch.utils.dlpack.from_dlpack
        spec, binding = self.bundle.graphs[graph], self.bindings[graph]
        device_id = torch.cuda.current_device() if device == "cuda" else 0
        if device == "cuda":
            torch.cuda.current_stream().synchronize()  # what torch wrote into the inputs is complete
        keep = [feeds[t.name].contiguous() for t in spec.inputs]
        for t, value in zip(spec.inputs, keep):
            binding.bind_input(t.name, device, device_id, np.dtype(t.dtype), tuple(value.shape), value.data_ptr())
        for name in spec.output_names:
            binding.bind_output(name, device, device_id)
        self.sessions[graph].run_with_iobinding(binding)  # ends by synchronizing the provider's stream
        # The C OrtValue behind the Python wrapper exports a DLPack capsule (the tensor keeps it alive).
        out = {name: from_dlpack(v._ortvalue.to_dlpack()) for name, v in zip(spec.output_names, binding.get_outputs())}
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        return out

    def describe(self) -> str:
        short = [p.replace("ExecutionProvider", "") for p in self.sessions[next(iter(self.sessions))].get_providers()]
        return (f"onnxruntime[{','.join(short)}]" + ("+iobinding" if self.values else "")
                + ("" if self.precision == "fp32" else f" {self.precision}"))

