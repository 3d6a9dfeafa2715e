"""The Python-backend models of an exported Triton repository (what runs *inside* Triton).

The repository's ``model.py`` files are tiny templates (``genctl/serve/triton_backend/``) that set up the
import path and subclass these, handing over Triton's ``triton_python_backend_utils`` module as ``pb``:
this file never imports Triton, so it stays importable (and testable) anywhere.

- ``GenerateModel``: the whole sampling loop of a bundle (``<model>/1/bundle``) through ONNX Runtime.
  ``execute`` gets the requests Triton's dynamic batcher stacked, turns every row into a genctl
  ``Request`` and runs them all in one ``Generator.generate_many`` call: conditions, seeds, n and
  controls may differ, each row keeps its own noise, so every answer is the one ``genctl generate``
  gives. A bad request gets its own error response (genctl's one-line message); the others are served.
- ``GraphModel``: one exported graph (``<model>/1/model.onnx``) on an ONNX Runtime session; stacked
  requests are concatenated along ``batch`` for one session call when the graph is batchable.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from genctl.errors import GenctlError
from genctl.serve import triton_io

LOG = logging.getLogger("genctl.serve.triton")


def _params(args: dict) -> dict[str, str]:
    config = json.loads(args["model_config"])
    return {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}


def check_arrays(pb) -> None:
    """Arrays must cross Triton's stub intact: the stubs of Triton <= 2.51 (pybind11 before numpy 2) misread
    numpy 2 arrays. A one-line load error instead of wrong numbers or a crashed stub."""
    probe = np.arange(3, dtype=np.float32)
    if not np.array_equal(pb.Tensor("probe", probe).as_numpy(), probe):
        raise GenctlError("Triton's Python-backend stub", got=f"numpy {np.__version__} arrays read back wrongly",
                          expected="numpy<2 in the backend's Python (this stub's pybind11 predates numpy 2)",
                          fix="put a numpy<2 first on its path (genctl serve --triton does: see GENCTL_TRITON_SITE)")


def _folder(args: dict) -> Path:
    return Path(args["model_repository"]) / str(args["model_version"])


class GenerateModel:
    """A bundle's sampler as a Triton model: conditions, seed, n and controls in; samples or texts out."""

    pb: Any = None  # triton_python_backend_utils, set by the model.py template

    def initialize(self, args: dict) -> None:
        from genctl.runtime.generator import Generator

        check_arrays(self.pb)
        params = _params(args)
        self.gen = Generator.load(_folder(args) / "bundle", backend=params.get("backend", "onnxruntime+nospin"),
                                  precision=params.get("precision", "fp32"))
        self.ports = triton_io.inputs(self.gen.bundle, self.gen.sampler)
        self.max_rows = int(params.get("max_rows", "1024"))
        self.gen.generate_many([self.gen.request(None, n=1, seed=0)])  # warm-up: first session calls are slow

    def execute(self, requests: list) -> list:
        parsed: list[list | str] = [self._parse(r) for r in requests]
        results = self._run([p for p in parsed if not isinstance(p, str)])
        responses = []
        for p in parsed:
            answer = p if isinstance(p, str) else results.pop(0)
            if isinstance(answer, str):
                responses.append(self.pb.InferenceResponse(output_tensors=[], error=_error(self.pb, answer)))
            else:
                arrays = triton_io.output_arrays(self.gen.bundle, answer)
                responses.append(self.pb.InferenceResponse(output_tensors=[self.pb.Tensor(k, v) for k, v in arrays.items()]))
        return responses

    def _parse(self, request) -> list | str:
        arrays = {}
        for port in self.ports:
            tensor = self.pb.get_input_tensor_by_name(request, port.name)
            if tensor is not None:
                arrays[port.name] = tensor.as_numpy()
        try:
            return triton_io.requests(self.gen, self.ports, arrays, self.max_rows)
        except GenctlError as exc:
            return str(exc)

    def _run(self, groups: list[list]) -> list[list | str]:
        """Every group's samples from one ``generate_many`` call; if that fails, each group alone (so one
        request that fails only in the loop does not fail the others)."""
        if not groups:
            return []
        flat = [r for g in groups for r in g]
        try:
            samples = self.gen.generate_many(flat)
        except Exception as exc:  # noqa: BLE001  (answered below, per request)
            if len(groups) == 1:
                return [_message(exc)]
            return [self._run([g])[0] for g in groups]
        out, start = [], 0
        for g in groups:
            out.append(samples[start:start + len(g)])
            start += len(g)
        return out

    def finalize(self) -> None:
        self.gen.close()


class GraphModel:
    """One exported ONNX graph on ONNX Runtime (the repository's per-graph models, Python backend)."""

    pb: Any = None

    def initialize(self, args: dict) -> None:
        import onnxruntime as ort

        check_arrays(self.pb)
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.batched = int(config.get("max_batch_size", 0)) > 0
        opts = ort.SessionOptions()
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(_folder(args) / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        self.dtypes = {i.name: _ORT_DTYPES.get(i.type, np.float32) for i in self.session.get_inputs()}

    def execute(self, requests: list) -> list:
        feeds = [{n: self.pb.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs} for r in requests]
        if self.batched and len(feeds) > 1:
            sizes = [len(f[self.inputs[0]]) for f in feeds]
            try:
                out = self._session({n: np.concatenate([f[n] for f in feeds]) for n in self.inputs})
            except Exception:  # noqa: BLE001  (shapes that do not stack: one call each)
                return [self._respond(f) for f in feeds]
            bounds = np.cumsum([0] + sizes)
            return [self._tensors({k: v[a:b] for k, v in out.items()}) for a, b in zip(bounds[:-1], bounds[1:])]
        return [self._respond(f) for f in feeds]

    def _session(self, feeds: dict) -> dict:
        feeds = {k: np.ascontiguousarray(v, dtype=self.dtypes[k]) for k, v in feeds.items()}
        return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))

    def _respond(self, feeds: dict):
        try:
            return self._tensors(self._session(feeds))
        except Exception as exc:  # noqa: BLE001
            message = f"Graph | got {type(exc).__name__}: {str(exc).splitlines()[0][:300]} | expected inputs the graph runs"
            return self.pb.InferenceResponse(output_tensors=[], error=_error(self.pb, message))

    def _tensors(self, out: dict):
        return self.pb.InferenceResponse(output_tensors=[self.pb.Tensor(k, np.ascontiguousarray(v)) for k, v in out.items()])


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
               "tensor(bool)": np.bool_, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}


def _error(pb, message: str):
    """A Triton error carrying genctl's one-line message: INVALID_ARG (HTTP 400) for the caller's mistakes,
    INTERNAL (500) for a bug (``Server | ...``)."""
    code = getattr(pb.TritonError, "INTERNAL" if message.startswith("Server |") else "INVALID_ARG", None)
    return pb.TritonError(message) if code is None else pb.TritonError(message, code)


def _message(exc: Exception) -> str:
    if isinstance(exc, GenctlError):
        return str(exc)
    LOG.exception("generation failed")
    return f"Server | got {type(exc).__name__} while generating | expected none | fix: report a bug"
