"""A real Triton Inference Server (the tritonserver of the nvidia-pytriton wheel) on exported repositories.

One server, started once for the module on loopback ports (bounded start, stopped in teardown), loads the
repositories of a trained cvae, a small diffusion model and a charrnn; tritonclient's HTTP and gRPC
clients check that the same seed gives the same samples as ``genctl generate``, that concurrent requests
are merged across conditions, that bad requests get genctl's one-line message while the server keeps
serving, and that the per-graph models answer as the bundle's graphs do. ``genctl serve --triton`` runs
as a real subprocess. The slow test loads a repository of every family in one server.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from genctl.cli.main import app
from genctl.runtime.generator import Generator
from genctl.serve import triton_io
from genctl.serve.triton import export_triton
from genctl.serve.triton_server import TritonServer, unavailable_reason

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"Triton server tests need the bundled tritonserver: {REASON}")
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

DIFFUSION = {"width": 8, "groups": 4, "channel_mult": [1, 2], "timesteps": 100}  # as tests/test_tune.py: one trained bundle
CHARRNN = {"embed_dim": 16, "hidden": 32, "layers": 2, "train_subset": 1500}  # as tests/test_autoregressive.py
ASKS = {  # family -> (conditions, n, seed, controls, Triton-only inputs)
    "cvae": ({"label": 7}, 3, 5, {"temperature": 0.8}, {}),
    "diffusion": ({"label": 3}, 2, 4, {"steps": 6, "guidance_scale": 2.5, "sampler": "dpmpp-2m"}, {}),
    "charrnn": ({"locale": 2}, 4, 7, {"temperature": 0.9, "top_k": 5}, {"prefix": "Ma"}),
}


@pytest.fixture(scope="module")
def bundles(cvae_bundle, make_bundle) -> dict[str, Path]:
    return {"cvae": Path(cvae_bundle), "diffusion": make_bundle("diffusion", epochs=2, **DIFFUSION).path,
            "charrnn": make_bundle("charrnn", "names", epochs=1, **CHARRNN).path}


@pytest.fixture(scope="module")
def server(bundles, tmp_path_factory):
    root = tmp_path_factory.mktemp("triton")
    repos = [export_triton(path, root / family, max_batch=32, max_wait_ms=30) for family, path in bundles.items()]
    with TritonServer(repos, timeout_s=240, log_file=root / "tritonserver.log") as triton:
        yield triton


def client(server, protocol: str):
    return httpclient.InferenceServerClient(server.http_url) if protocol == "http" else grpcclient.InferenceServerClient(server.grpc_url)


def infer(server, protocol: str, model: str, arrays: dict[str, tuple[np.ndarray, str]]):
    """One inference over ``protocol``; ``arrays``: name -> (array with the batch dim, wire datatype)."""
    mod = httpclient if protocol == "http" else grpcclient
    inputs = []
    for name, (arr, wire) in arrays.items():
        x = mod.InferInput(name, list(arr.shape), wire)
        x.set_data_from_numpy(arr)
        inputs.append(x)
    return client(server, protocol).infer(model, inputs)


def ask_arrays(bundle_path: Path, conditions: dict, n: int, seed: int, controls: dict, extra: dict, rows: int = 1) -> dict:
    with Generator.load(bundle_path, backend="onnxruntime") as gen:
        ports = {p.name: p for p in triton_io.inputs(gen.bundle, gen.sampler)}
    values = {**conditions, "n": n, "seed": seed, **controls, **extra}
    return {k: (ports[k].array([v] * rows), ports[k].wire) for k, v in values.items()}


def metric(server, name: str, model: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    m = re.search(rf'^{name}{{model="{model}",version="1"}} ([0-9.e+]+)$', text, re.M)
    return float(m[1]) if m else 0.0


# ------------------------------------------------------------------------------------------ parity

@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("family", list(ASKS))
def test_same_seed_same_samples_as_genctl_generate(server, bundles, family, protocol, tmp_path):
    """Images within 1e-6 of ``genctl generate --out s.npy``, texts and tokens identical to ``--out s.json``."""
    conditions, n, seed, controls, extra = ASKS[family]
    out = infer(server, protocol, f"{family}_generate", ask_arrays(bundles[family], conditions, n, seed, controls, extra))
    args = ["generate", str(bundles[family]), "-n", n, "--seed", seed, "--backend", "onnxruntime"]
    args += [f"--cond={k}={v}" for k, v in conditions.items()]
    args += [f"--{k.replace('_', '-')}={v}" for k, v in {**controls, **extra}.items()]
    target = tmp_path / ("s.json" if family == "charrnn" else "s.npy")
    r = CliRunner().invoke(app, [str(a) for a in args] + ["--out", str(target)])
    assert r.exit_code == 0, r.output
    if family == "charrnn":
        ref = json.loads(target.read_text())  # one record per sample: text, condition, tokens
        texts = [t.decode() for t in out.as_numpy("texts")[0]]
        assert texts == [r["text"] for r in ref] and all(t.startswith("Ma") for t in texts)
        assert out.as_numpy("tokens")[0].tolist() == [r["tokens"] for r in ref]
    else:
        samples = out.as_numpy("samples")
        assert samples.shape == (1,) + np.load(target).shape
        np.testing.assert_allclose(samples[0], np.load(target), atol=1e-6, rtol=0)
    assert out.as_numpy("rows").shape == (1, 1)


def test_concurrent_requests_are_merged_across_conditions_and_answer_as_alone(server, bundles):
    """Twelve requests in flight at once (different labels, seeds, n): Triton's batcher hands them to the
    model in fewer executions than requests, and every answer equals ``Generator.generate`` alone."""
    asks = [({"label": i % 10}, 1 + i % 3, 100 + i) for i in range(12)]
    before = (metric(server, "nv_inference_count", "cvae_generate"), metric(server, "nv_inference_exec_count", "cvae_generate"))
    c = httpclient.InferenceServerClient(server.http_url, concurrency=12)
    pending = []
    for conditions, n, seed in asks:
        inputs = []
        for name, (arr, wire) in ask_arrays(bundles["cvae"], conditions, n, seed, {}, {}).items():
            x = httpclient.InferInput(name, list(arr.shape), wire)
            x.set_data_from_numpy(arr)
            inputs.append(x)
        pending.append(c.async_infer("cvae_generate", inputs))
    answers = [p.get_result().as_numpy("samples")[0] for p in pending]
    requests = metric(server, "nv_inference_count", "cvae_generate") - before[0]
    executions = metric(server, "nv_inference_exec_count", "cvae_generate") - before[1]
    assert requests == 12 and executions < 12, (requests, executions)
    with Generator.load(bundles["cvae"], backend="onnxruntime") as gen:
        for (conditions, n, seed), got in zip(asks, answers):
            np.testing.assert_allclose(got, gen.generate(conditions, n=n, seed=seed).data, atol=1e-6, rtol=0)


def test_a_batch_row_per_request_in_one_triton_request(server, bundles):
    """A Triton request with 3 batch rows = 3 genctl requests (labels 1, 2, 3; seeds 0, 1, 2)."""
    with Generator.load(bundles["cvae"], backend="onnxruntime") as gen:
        ports = {p.name: p for p in triton_io.inputs(gen.bundle, gen.sampler)}
        out = infer(server, "grpc", "cvae_generate", {"label": (ports["label"].array([1, 2, 3]), "INT64"),
                                                       "seed": (ports["seed"].array([0, 1, 2]), "INT64")})
        for i in range(3):
            np.testing.assert_allclose(out.as_numpy("samples")[i], gen.generate({"label": i + 1}, n=1, seed=i).data, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ bad input

BAD = [  # (model, inputs, message): Triton's own checks of the config, then genctl's one-line messages
    ("cvae_generate", {"lable": (np.array([[1]], np.int64), "INT64")}, "unexpected inference input 'lable'"),
    ("cvae_generate", {"label": (np.array([[1.0]], np.float32), "FP32")}, "data-type is 'FP32', but model 'cvae_generate' expects 'INT64'"),
    ("cvae_generate", {"label": (np.array([[1, 2]], np.int64), "INT64")}, "unexpected shape for input 'label'"),
    ("cvae_generate", {"label": (np.array([[12]], np.int64), "INT64")},
     "Condition 'label' | got 12 | expected an index in 0..9 or one of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"),
    ("cvae_generate", {"temperature": (np.array([[np.nan]], np.float32), "FP32")}, "Input 'temperature' | got NaN | expected a finite number in [0.0, 10.0]"),
    ("cvae_generate", {"n": (np.array([[0]], np.int32), "INT32")}, "Input 'n' (samples per condition) | got 0 | expected an integer in [1, 1024]"),
    ("diffusion_generate", {"sampler": (np.array([[b"euler"]], dtype=object), "BYTES")},
     "Input 'sampler' | got 'euler' | expected one of ['ddim', 'ddpm', 'dpmpp-2m']"),
    ("charrnn_generate", {"prefix": (np.array([[b"\xff\xfe"]], dtype=object), "BYTES")}, "Input 'prefix' | got bytes that are not UTF-8"),
    ("charrnn_generate", {"top_k": (np.array([[-1]], np.int32), "INT32")}, "Input 'top_k' | got -1 | expected a value in [0, inf]"),
]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_inputs_get_one_line_errors_and_the_server_keeps_serving(server, protocol):
    for model, arrays, message in BAD:
        with pytest.raises(InferenceServerException) as info:
            infer(server, protocol, model, arrays)
        assert message in info.value.message(), (model, info.value.message())
        assert str(info.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT")
        assert "\n" not in info.value.message() and "Traceback" not in info.value.message()
    ok = infer(server, protocol, "cvae_generate", {"label": (np.array([[4]], np.int64), "INT64")})
    assert ok.as_numpy("samples").shape == (1, 1, 1, 8, 8)
    assert client(server, protocol).is_server_live() and client(server, protocol).is_model_ready("charrnn_generate")


def test_one_bad_request_in_a_batch_does_not_fail_the_others(server):
    c = httpclient.InferenceServerClient(server.http_url, concurrency=6)
    pending = []
    for label in (1, 99, 2, 98, 3, 4):
        x = httpclient.InferInput("label", [1, 1], "INT64")
        x.set_data_from_numpy(np.array([[label]], np.int64))
        pending.append((label, c.async_infer("cvae_generate", [x])))
    for label, p in pending:
        if label < 10:
            assert p.get_result().as_numpy("samples").shape == (1, 1, 1, 8, 8)
        else:
            with pytest.raises(InferenceServerException, match=f"Condition 'label' \\| got {label}"):
                p.get_result()


# ------------------------------------------------------------------------------------------ graphs

def recorded_graph_calls(bundle_path: Path, conditions: dict | None, **controls) -> dict[str, tuple[dict, dict]]:
    """The first feeds and outputs of every graph a generate call runs (ONNX Runtime, in process)."""
    calls: dict[str, tuple[dict, dict]] = {}
    with Generator.load(bundle_path, backend="onnxruntime") as gen:
        timed = gen.backend._timed

        def record(impl, graph, feeds):
            out = timed(impl, graph, feeds)
            calls.setdefault(graph, ({k: np.array(v) for k, v in feeds.items()}, {k: np.array(v) for k, v in out.items()}))
            return out

        gen.backend._timed = record
        gen.generate(conditions, n=2, seed=1, **controls)
    return calls


def check_graph_models(server, family: str, calls: dict, spec_of) -> int:
    """Send every recorded graph call to ``<family>_<graph>`` over HTTP; outputs must match the in-process run."""
    for graph, (feeds, outputs) in calls.items():
        spec = spec_of(graph)
        batched = all(t.shape and t.shape[0] == "batch" for t in spec.inputs + spec.outputs)
        arrays = {k: (v.reshape(len(v), 1) if batched and v.ndim == 1 else v, _wire(v)) for k, v in feeds.items()}
        out = infer(server, "http", f"{family}_{graph}", arrays)
        for name, want in outputs.items():
            np.testing.assert_allclose(out.as_numpy(name).reshape(want.shape), want, atol=1e-5, rtol=1e-5, err_msg=f"{family}_{graph}.{name}")
    return len(calls)


def _wire(arr: np.ndarray) -> str:
    return triton_io.WIRE[arr.dtype.name]


@pytest.mark.parametrize("family", list(ASKS))
def test_graph_models_answer_as_the_bundle_graphs(server, bundles, family):
    from genctl.bundle import Bundle

    bundle = Bundle.load(bundles[family])
    conditions, _, _, controls, _ = ASKS[family]
    assert check_graph_models(server, family, recorded_graph_calls(bundles[family], conditions, **controls), bundle.graphs.get) >= 1


# ------------------------------------------------------------------------------------------ the CLI

def test_cli_serve_triton_serves_and_stops_on_sigterm(bundles, tmp_path):
    """``genctl serve BUNDLE --triton`` as a subprocess: ready line, an answer over HTTP, a clean exit on SIGTERM."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "genctl", "serve", str(bundles["charrnn"]), "--triton", "--http-port", "0", "--grpc-port", "0",
           "--metrics-port", "0", "--max-queue-delay-us", "500", "--max-batch", "8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        line, deadline = "", time.monotonic() + 180
        while "serving" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline()
        url = re.search(r"http://(127\.0\.0\.1:\d+)/v2/models/charrnn_generate/infer", line)
        assert url, line
        c = httpclient.InferenceServerClient(url[1])
        x = httpclient.InferInput("seed", [1, 1], "INT64")
        x.set_data_from_numpy(np.array([[3]], np.int64))
        texts = c.infer("charrnn_generate", [x]).as_numpy("texts")
        assert texts.shape == (1, 8) and c.get_model_config("charrnn_generate")["dynamic_batching"]["max_queue_delay_microseconds"] in (500, "500")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()  # the tritonserver it started gets SIGTERM from the kernel (PR_SET_PDEATHSIG)
            proc.wait(timeout=30)
    with pytest.raises((InferenceServerException, OSError)):  # nothing left listening
        httpclient.InferenceServerClient(url[1], connection_timeout=2).is_server_live()


# ------------------------------------------------------------------------------------------ every family

class Painter(torch.nn.Module):
    """A custom one-shot model with a continuous and a vector condition (FP32 Triton inputs)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4 + 1 + 3, 2 * 4 * 4), torch.nn.Tanh())

    def forward(self, z, smile, emb):
        return self.net(torch.cat([z, smile[:, None], emb], dim=1)).reshape(-1, 2, 4, 4)


@pytest.mark.slow
def test_every_family_loads_and_answers(make_bundle, bundles, tmp_path):
    """A repository of every family (untrained where training adds nothing to load-and-answer) in one server:
    every generate model answers as ``Generator.generate`` does and every graph model as its graph."""
    import genctl
    from genctl.byo import OneShot

    paths = dict(bundles)
    paths["cgan"] = make_bundle("cgan", epochs=0, latent_dim=8, width=8, label_dim=8).path
    paths["cflow"] = make_bundle("cflow", epochs=0, scales=1, steps=2, hidden=16, label_dim=4).path
    paths["chartransformer"] = make_bundle("chartransformer", "names", epochs=0, d_model=32, heads=2, layers=2, train_subset=1500).path
    paths["textdiffusion"] = make_bundle("textdiffusion", "digits", epochs=0, encoder="tiny", width=16, groups=4, heads=2, timesteps=100,
                                         default_steps=4, captions_per_image=2).path
    paths["ntm"] = make_bundle("ntm", "repeat-copy", epochs=0, memory_rows=8, memory_width=6, controller=24, compile=False).path
    torch.manual_seed(0)
    genctl.export_model(Painter(), tmp_path / "painter", loop=OneShot(noise_shape=(4,)),
                        conditions=[genctl.Continuous("smile", 0.0, 1.0), genctl.Vector("emb", 3, -1.0, 1.0)])
    paths["custom"] = tmp_path / "painter"
    asks = {"cgan": {"label": 5}, "cflow": {"label": 1}, "chartransformer": {"locale": 0}, "textdiffusion": {"caption": "a bold 7"},
            "custom": {"smile": 0.25, "emb": (0.5, -0.5, 0.125)}, "cvae": {"label": 2}, "diffusion": {"label": 8}, "charrnn": {"locale": 1},
            "ntm": {"repeats": 2}}
    repos = [export_triton(p, tmp_path / "repos" / name, max_batch=8, max_wait_ms=1) for name, p in paths.items()]
    with TritonServer(repos, timeout_s=600, log_file=tmp_path / "tritonserver.log") as triton:
        for family, path in paths.items():
            with Generator.load(path, backend="onnxruntime") as gen:
                ports = {p.name: p for p in triton_io.inputs(gen.bundle, gen.sampler)}
                arrays = {k: (ports[k].array([v]), ports[k].wire) for k, v in {**asks[family], "seed": 3, "n": 2}.items()}
                out = infer(triton, "grpc", f"{gen.bundle.family}_generate", arrays)
                want = gen.generate(asks[family], n=2, seed=3)
                if want.kind == "text":
                    assert [t.decode() for t in out.as_numpy("texts")[0]] == want.texts, family
                else:
                    np.testing.assert_allclose(out.as_numpy("samples")[0], want.data, atol=1e-6, rtol=0, err_msg=family)
                calls = recorded_graph_calls(path, asks[family])
                assert check_graph_models(triton, gen.bundle.family, calls, gen.bundle.graphs.get) == len(calls) >= 1
            assert all(client(triton, "http").is_model_ready(p.name) for p in (tmp_path / "repos" / family).iterdir() if p.is_dir())
