"""export-triton without a server: every config.pbtxt parses as Triton's ModelConfig and matches the bundle.

The server tests (the bundled tritonserver loading the repositories) are in tests/test_triton_server.py.
"""
from __future__ import annotations

import onnx
import pytest
from typer.testing import CliRunner

from genctl.bundle import Bundle
from genctl.cli.main import app
from genctl.errors import GenctlError
from genctl.runtime.generator import Generator
from genctl.serve import triton_io, triton_server
from genctl.serve.triton import export_triton

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

TYPES = {"float32": model_config_pb2.TYPE_FP32, "int64": model_config_pb2.TYPE_INT64, "int32": model_config_pb2.TYPE_INT32,
         "bytes": model_config_pb2.TYPE_STRING}


def parse(path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_cvae_repository_configs_parse_and_match_the_graphs(cvae_bundle, tmp_path):
    repo = export_triton(cvae_bundle, tmp_path / "repo", max_batch=32, max_wait_ms=2, max_queue=10, instances=2)
    bundle = Bundle.load(cvae_bundle)
    for graph, spec in bundle.graphs.items():
        folder = repo / f"cvae_{graph}"
        cfg = parse(folder / "config.pbtxt")
        assert cfg.name == folder.name and cfg.backend == "python" and cfg.max_batch_size == 32
        assert (folder / "1" / "model.py").is_file() and cfg.instance_group[0].count == 2
        assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
        assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 10
        assert cfg.dynamic_batching.default_queue_policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
        assert [i.name for i in cfg.input] == spec.input_names and [o.name for o in cfg.output] == spec.output_names
        for t, c in zip(spec.inputs + spec.outputs, list(cfg.input) + list(cfg.output)):
            assert c.data_type == TYPES[t.dtype]
            dims = [d if isinstance(d, int) else -1 for d in t.shape[1:]]
            assert list(c.dims) == (dims or [1]) and (bool(dims) or c.HasField("reshape"))
        model = onnx.load(folder / "1" / "model.onnx")
        assert [i.name for i in model.graph.input] == spec.input_names
    assert "cvae_decode" in (repo / "README.md").read_text()


def test_generate_model_config_is_the_io_contract(cvae_bundle, tmp_path):
    """cvae_generate: label INT64, seed, n, temperature, all optional; samples FP32 [-1, 1, 8, 8]; the bundle inside."""
    repo = export_triton(cvae_bundle, tmp_path / "repo", max_batch=16, max_wait_ms=1.5, graphs=False)
    cfg = parse(repo / "cvae_generate" / "config.pbtxt")
    assert cfg.backend == "python" and cfg.max_batch_size == 16 and cfg.dynamic_batching.max_queue_delay_microseconds == 1500
    assert [(i.name, i.data_type, list(i.dims), i.optional) for i in cfg.input] == [
        ("label", TYPES["int64"], [1], True), ("seed", TYPES["int64"], [1], True), ("n", TYPES["int32"], [1], True),
        ("temperature", TYPES["float32"], [1], True)]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("samples", [-1, 1, 8, 8]), ("rows", [-1])]
    assert cfg.parameters["max_rows"].string_value == "1024"
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "cvae_generate", "genctl_sampler.json"]
    Bundle.load(repo / "cvae_generate" / "1" / "bundle")  # hashes verified: a complete copy
    assert "import triton_python_backend_utils" in (repo / "cvae_generate" / "1" / "model.py").read_text()


def test_graph_backend_onnxruntime_for_a_full_triton(cvae_bundle, tmp_path):
    repo = export_triton(cvae_bundle, tmp_path / "repo", graph_backend="onnxruntime")
    cfg = parse(repo / "cvae_decode" / "config.pbtxt")
    assert cfg.backend == "onnxruntime" and not (repo / "cvae_decode" / "1" / "model.py").exists()
    assert parse(repo / "cvae_generate" / "config.pbtxt").backend == "python"


def test_rows_of_a_triton_request_become_genctl_requests(cvae_bundle):
    """Each batch row is one request with its own seed; FP32 controls read back as the typed decimal;
    rows asking for different sample counts, a bad n and a NaN control are one-line errors naming the input."""
    with Generator.load(cvae_bundle, backend="onnxruntime") as gen:
        ports = {p.name: p for p in triton_io.inputs(gen.bundle, gen.sampler)}
        arrays = {"label": ports["label"].array([3, 9]), "seed": ports["seed"].array([1, 2]), "temperature": ports["temperature"].array([0.8, 0.8])}
        reqs = triton_io.requests(gen, list(ports.values()), arrays, max_rows=100)
        assert [r.rows.labels for r in reqs] == [["label=3"], ["label=9"]] and reqs[0].controls["temperature"] == 0.8
        out = triton_io.output_arrays(gen.bundle, gen.generate_many(reqs))
        assert out["samples"].shape == (2, 1, 1, 8, 8) and out["rows"].tolist() == [[b"label=3"], [b"label=9"]]
        bad = [({"n": ports["n"].array([1, 2])}, r"Input 'n' \| got rows asking for \[10, 20\] samples in one request"),  # no label: 10 rows
               ({"n": ports["n"].array([0])}, r"Input 'n' \(samples per condition\) \| got 0 \| expected an integer in \[1, 100\]"),
               ({"seed": ports["seed"].array([-3])}, r"^Input 'seed' \| got -3"),
               ({"temperature": ports["temperature"].array([float("nan")])}, r"Input 'temperature' \| got NaN \| expected a finite number"),
               ({"label": ports["label"].array([10])}, r"Condition 'label' \| got 10 \| expected an index in 0..9")]
        for arrays, message in bad:
            with pytest.raises(GenctlError, match=message):
                triton_io.requests(gen, list(ports.values()), arrays, max_rows=100)


def test_cli_writes_repository_and_refuses_to_overwrite(cvae_bundle, tmp_path):
    runner = CliRunner()
    out = tmp_path / "repo"
    r = runner.invoke(app, ["export-triton", str(cvae_bundle), "--out", str(out), "--max-queue-delay-us", "250"])
    assert r.exit_code == 0, r.output
    assert "cvae_generate" in r.output
    assert all(parse(p).max_batch_size == 64 for p in out.glob("*/config.pbtxt"))
    assert parse(out / "cvae_generate" / "config.pbtxt").dynamic_batching.max_queue_delay_microseconds == 250
    r = runner.invoke(app, ["export-triton", str(cvae_bundle), "--out", str(out)])
    assert r.exit_code == 1 and "pass --force" in r.output


def test_serve_refuses_triton_flags_without_triton_and_a_missing_server_is_one_line(cvae_bundle, monkeypatch):
    runner = CliRunner()
    r = runner.invoke(app, ["serve", str(cvae_bundle), "--instances", "2"])
    assert r.exit_code == 1 and "error: --instances | got 2 | expected it only with --triton" in r.output
    r = runner.invoke(app, ["serve", str(cvae_bundle), "--triton", "--backend", "torch"])
    assert r.exit_code == 1 and "--backend with --triton | got torch" in r.output
    monkeypatch.setattr(triton_server.importlib.util, "find_spec", lambda name: None)
    r = runner.invoke(app, ["serve", str(cvae_bundle), "--triton"])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    assert "Triton Inference Server | got the nvidia-pytriton wheel is not installed" in r.output and "pip install --no-deps" in r.output
