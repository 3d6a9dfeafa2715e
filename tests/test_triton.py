"""export-triton: every config.pbtxt parses as Triton's ModelConfig and matches the graph's spec."""
from __future__ import annotations

import onnx
import pytest
from typer.testing import CliRunner

from genctl.bundle import Bundle
from genctl.cli.main import app
from genctl.serve.triton import export_triton

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
text_format = pytest.importorskip("google.protobuf.text_format")

TYPES = {"float32": model_config_pb2.TYPE_FP32, "int64": model_config_pb2.TYPE_INT64}


def parse(path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_cvae_repository_configs_parse_and_match_the_graphs(cvae_bundle, tmp_path):
    repo = export_triton(cvae_bundle, tmp_path / "repo", max_batch=32, max_wait_ms=2, max_queue=10)
    bundle = Bundle.load(cvae_bundle)
    for graph, spec in bundle.graphs.items():
        folder = repo / f"cvae_{graph}"
        cfg = parse(folder / "config.pbtxt")
        assert cfg.name == folder.name and cfg.backend == "onnxruntime" and cfg.max_batch_size == 32
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


def test_cli_writes_repository_and_refuses_to_overwrite(cvae_bundle, tmp_path):
    runner = CliRunner()
    out = tmp_path / "repo"
    r = runner.invoke(app, ["export-triton", str(cvae_bundle), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert all(parse(p).max_batch_size == 64 for p in out.glob("*/config.pbtxt"))
    r = runner.invoke(app, ["export-triton", str(cvae_bundle), "--out", str(out)])
    assert r.exit_code == 1 and "pass --force" in r.output
