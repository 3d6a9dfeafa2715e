"""ONNX Runtime backend: one InferenceSession per graph, providers from what is really usable."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from genctl.bundle import Bundle, unreadable_graph
from genctl.errors import BackendUnavailable
from genctl.runtime.backends.base import Backend, TorchValues
from genctl.runtime.backends.bindings import SlotCache, shape_key
from genctl.runtime.devices import onnxruntime_providers, optimization_provider


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


def check_opt_provider(bundle: Bundle, providers: list[str]) -> None:
    """An ``opt`` graph holds fusions for the provider it was optimised with (the CPU provider's
    FusedConv+LeakyRelu fails to load on CUDA); refuse it under another provider, with the fix."""
    record = bundle.manifest.get("variants", {}).get("opt", {})
    built = record.get("provider") or next(iter(record.get("provenance", {}).values()), {}).get("provider")
    here = optimization_provider(providers)
    if built and built != here:
        short = lambda p: p.replace("ExecutionProvider", "")  # noqa: E731
        raise BackendUnavailable(f"Variant 'opt' of bundle '{bundle.path}'", got=f"optimised for {short(built)} (here {short(here)})",
                                 expected=f"a graph optimised for {short(here)}",
                                 fix=f"run 'genctl build {bundle.path} --target onnxruntime --precision fp32' on this machine")


class OnnxRuntimeBackend(Backend):
    """One InferenceSession per graph. Single calls use ``session.run`` on numpy arrays.

    Loops use IO binding when a GPU provider runs the graphs (``io_binding=None``, the default):
    fed-back state (diffusion latent, RNN hidden state, KV cache) stays in device memory as torch
    tensors. A graph called again at the shapes of its previous call runs on a persistent slot
    (buffers bound once, ``bindings``); other calls bind per call and take ORT-allocated outputs
    over through DLPack without a copy. ``cuda_graphs=True`` (``onnxruntime+cudagraphs``) lets the
    CUDA EP capture each slot as a CUDA graph and replay it. On the CPU provider there is nothing to keep resident and binding costs Python
    calls (measured +150 µs per decode step on the 2-core box, BENCHMARKS.md), so it is off unless
    asked for with ``io_binding=True`` (the tests do, to run the same code path on CPU).
    """

    name = "onnxruntime"
    precisions = ("fp32", "fp16", "int8", "opt")

    def __init__(self, bundle: Bundle, precision: str = "fp32", providers: list[str] | None = None,
                 io_binding: bool | None = None, cuda_graphs: bool = False, spin: bool = True, graph_pick: bool = False):
        super().__init__(bundle, precision)
        import_ort()  # a one-line error when the package is missing
        _, usable = onnxruntime_providers()
        self.providers = providers or usable
        if precision == "opt":
            check_opt_provider(bundle, self.providers)
        if cuda_graphs and "CUDAExecutionProvider" not in self.providers:
            raise BackendUnavailable("Backend option '+cudagraphs' of 'onnxruntime'", got="no usable CUDA execution provider",
                                     expected="an NVIDIA GPU and onnxruntime-gpu", fix="use 'onnxruntime' (no CUDA graphs)")
        self.cuda_graphs, self.spin, self.graph_pick = cuda_graphs, spin, graph_pick
        self.unfused: dict[str, str] = {}  # step graphs the pick could not be appended to, and why
        self.uncaptured: dict[str, str] = {}  # graphs whose session refused CUDA graphs (+cudagraphs), and why
        self.sessions = {name: self._session(name) for name in bundle.graphs}
        on_gpu = self.sessions[next(iter(self.sessions))].get_providers()[0] != "CPUExecutionProvider"
        if cuda_graphs or (on_gpu if io_binding is None else io_binding):
            self.values = TorchValues("cuda" if on_gpu else "cpu")
            self.bindings = {name: sess.io_binding() for name, sess in self.sessions.items()}
            self.slots = SlotCache(self._run_options, cuda_graph_ids=cuda_graphs, uncaptured=self.uncaptured)
        self._plain_options = self._run_options(None)

    def _session(self, name: str, model: bytes | None = None):
        """One session on the bundle's graph ``name`` (or on ``model``); with CUDA graphs the CUDA
        EP captures (``enable_cuda_graph``), and only the calls that name a ``gpu_graph_id`` (bound
        slots) are captured or replayed.

        ORT refuses CUDA graphs for a graph with control-flow nodes or with a Memcpy between CPU
        and GPU nodes (a kernel missing on CUDA). As for TensorRT's captures, that graph then runs
        without them and the run goes on; ``uncaptured`` keeps why, and ``describe`` names it."""
        ort = import_ort()
        options = provider_options(self.bundle, self.providers, self.precision)
        if self.cuda_graphs and name not in self.uncaptured:
            options = [(p, {**o, "enable_cuda_graph": "1"}) if p == "CUDAExecutionProvider" else (p, o)
                       for p, o in (x if isinstance(x, tuple) else (x, {}) for x in options)]
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

        source = model if model is not None else str(self.bundle.graph_file(name, self.precision))
        try:
            return ort.InferenceSession(source, sess_options=session_options(spin=self.spin), providers=options)
        except (InvalidProtobuf, InvalidGraph) as exc:
            raise unreadable_graph(self.bundle.graph_file(name.split("+")[0], self.precision), exc) from None
        except Fail as exc:
            if not self.cuda_graphs or name in self.uncaptured or "graph capture" not in str(exc):
                raise
            self.uncaptured[name] = str(exc).split("as requested by the user", 1)[-1].strip(" .")
            return self._session(name, model)

    def fused_pick(self, graph: str, logits: str, mode: str) -> str | None:
        """``graph`` with the ``mode`` token pick appended (``samplers.graph_pick``), built once
        from the bundle's verified graph file of this precision. Opt-in (``+graphpick``): each
        mode used loads the step graph's weights once more, and on the CPU provider the host pick
        is as fast or faster (BENCHMARKS.md). None (host pick) when off or when the graph cannot
        take it (the reason is kept in ``unfused``)."""
        import onnx

        from genctl.runtime.samplers import graph_pick

        if not self.graph_pick or graph in self.unfused:
            return None
        name = graph_pick.fused_name(graph, mode)
        if name not in self.sessions:
            model = onnx.load(str(self.bundle.graph_file(graph, self.precision)))
            why = graph_pick.fusable(model, self.specs[graph], logits)
            if why:
                self.unfused[graph] = why
                return None
            self.specs[name] = graph_pick.fused_spec(self.specs[graph], logits, mode)
            self.sessions[name] = self._session(name, graph_pick.fuse(model, self.specs[graph], logits, mode).SerializeToString())
            if self.values:
                self.bindings[name] = self.sessions[name].io_binding()
        return name

    def _run_options(self, graph_id: int | None):
        """Run options: with CUDA graphs, ``gpu_graph_id`` = the slot's graph, or -1 (no capture)."""
        if not self.cuda_graphs:
            return None
        options = import_ort().RunOptions()
        options.add_run_config_entry("gpu_graph_id", str(graph_id if graph_id is not None else -1))
        return options

    def _run_impl(self, graph: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host arrays in and out. With IO binding on, calls go through the value path too, so a
        one-shot graph called again at the same batch runs on a persistent slot (captured as a
        CUDA graph with ``+cudagraphs``); outputs are copied out, as a slot reuses its buffers."""
        spec = self.specs[graph]
        if self.values is not None:
            out = self._run_values_impl(graph, {k: self.values.put(v) for k, v in feeds.items()})
            return {k: np.array(self.values.get(v), copy=True) for k, v in out.items()}
        outputs = self.sessions[graph].run(spec.output_names, dict(feeds), self._plain_options)
        return dict(zip(spec.output_names, outputs))

    def _run_values_impl(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """IO binding. Shapes seen on the previous call of this graph run on a persistent slot
        (bound once, see ``bindings``); others bind per call, with outputs allocated by ONNX
        Runtime on the device and taken over as torch tensors through DLPack (no copy)."""
        spec = self.specs[graph]
        key = shape_key(spec, feeds)
        slot = self.slots.get(graph, key)
        if slot is not None:
            return slot.run(feeds, self._synchronize)
        out = self._run_bound_once(graph, feeds)
        self.slots.after_dynamic_call(self.sessions[graph], spec, key, feeds, out, *self._device())
        return out

    def _device(self) -> tuple[str, int]:
        device = self.values.device
        return device, (self.values.torch.cuda.current_device() if device == "cuda" else 0)

    def _synchronize(self) -> None:
        if self.values.device == "cuda":
            self.values.torch.cuda.current_stream().synchronize()

    def _run_bound_once(self, graph: str, feeds: Mapping[str, Any]) -> dict[str, Any]:
        from_dlpack = self.values.torch.utils.dlpack.from_dlpack
        spec, binding = self.specs[graph], self.bindings[graph]
        device, device_id = self._device()
        self._synchronize()
        keep = [feeds[t.name].contiguous() for t in spec.inputs]
        for t, value in zip(spec.inputs, keep):
            binding.bind_input(t.name, device, device_id, np.dtype(t.dtype), tuple(value.shape), value.data_ptr())
        for name in spec.output_names:
            binding.bind_output(name, device, device_id)
        self.sessions[graph].run_with_iobinding(binding, self._plain_options)  # ends by synchronizing the provider's stream
        # The C OrtValue behind the Python wrapper exports a DLPack capsule (the tensor keeps it alive).
        out = {name: from_dlpack(v._ortvalue.to_dlpack()) for name, v in zip(spec.output_names, binding.get_outputs())}
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        return out

    def describe(self) -> str:
        short = [p.replace("ExecutionProvider", "") for p in self.sessions[next(iter(self.sessions))].get_providers()]
        captured = "" if not self.cuda_graphs else "+cudagraphs" + (f"(not {','.join(sorted(self.uncaptured))})" if self.uncaptured else "")
        return (f"onnxruntime[{','.join(short)}]" + ("+iobinding" if self.values else "") + captured
                + ("+graphpick" if self.graph_pick else "")
                + ("" if self.precision == "fp32" else f" {self.precision}"))

