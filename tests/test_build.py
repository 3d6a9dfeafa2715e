"""genctl build on CPU: ORT variants (opt, int8), the quality gate, and every bad-input error.

Uses the session's tiny digits cVAE (conftest) and copies its bundle, since builds add files.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable, BundleError, GenctlError, ParityError
from genctl.export import parity
from genctl.optimize import ort_variants
from genctl.optimize.build import build
from genctl.optimize.gate import GateConfig

FAST = GateConfig(control_n_per_class=0)  # the evaluator-based check has its own (slow) test


@pytest.fixture(scope="module")
def built(cvae_bundle, copy_bundle) -> Path:
    """A bundle copy with the int8 and opt variants built once for this module."""
    path = copy_bundle(cvae_bundle, "cvae")
    build(path, precision="int8", gate=FAST)
    build(path, precision="fp32", gate=FAST)  # onnxruntime fp32 = the offline-optimized "opt" graph
    return path


@pytest.fixture()
def fresh(cvae_bundle, copy_bundle) -> Path:
    return copy_bundle(cvae_bundle, "cvae")


def poison(graph: str, initializer: str):
    """A converter that really builds the variant, then sets one of ``graph``'s weights to NaN."""
    from genctl.optimize import ort_variants

    real = ort_variants.build_variant

    def convert(src, dst, precision, int8=None, **kwargs):
        info = real(src, dst, precision, int8, **kwargs)
        if src.stem == graph:
            model = onnx.load(str(dst))
            for init in model.graph.initializer:
                if init.name == initializer:
                    values = onnx.numpy_helper.to_array(init).copy()
                    values[...] = np.nan
                    init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
            onnx.save(model, str(dst))
        return info

    return convert


def test_variants_recorded_in_manifest(built):
    bundle = Bundle.load(built)  # verifies every variant file's sha256 too
    for variant in ("int8", "opt"):
        record = bundle.manifest["variants"][variant]
        assert record["status"] == "passed" and record["gate"]["passed"]
        assert set(record["graphs"]) == {"decode", "encode"}
        for name, entry in record["graphs"].items():
            assert entry["file"] == f"graphs/{name}.{variant}.onnx"
            assert (built / entry["file"]).is_file()
    int8 = bundle.manifest["variants"]["int8"]
    assert "MatMulInteger" in int8["provenance"]["decode"]["integer_ops"]
    assert int8["provenance"]["decode"]["reduce_range"] is ort_variants.needs_reduce_range()  # recorded, chosen for this CPU
    assert int8["gate"]["graphs"]["decode"]["outputs"]["sample"] <= parity.TOLERANCE["int8"]
    assert bundle.manifest["variants"]["opt"]["gate"]["loop"]["max_error"] <= parity.TOLERANCE["fp32"]
    assert not list((built / "graphs").glob(".*tmp*")), "temp files left behind"


def test_opt_variant_records_its_provider_and_refuses_another(built, copy_bundle):
    """The offline-optimised graph is tied to the provider it was optimised with (CPU fusions fail
    on CUDA): the provider is recorded, and a mismatch is refused in one line with the rebuild."""
    from genctl.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from genctl.runtime.devices import onnxruntime_providers, optimization_provider

    here = optimization_provider(onnxruntime_providers()[1])
    record = Bundle.load(built).manifest["variants"]["opt"]
    assert record["provider"] == here
    assert {p["provider"] for p in record["provenance"].values()} == {here}
    copy = copy_bundle(built, "other")
    bundle = Bundle.load(copy)
    other = "CPUExecutionProvider" if here != "CPUExecutionProvider" else "CUDAExecutionProvider"
    bundle.manifest["variants"]["opt"]["provider"] = other
    bundle.save_manifest()
    short = lambda p: p.replace("ExecutionProvider", "")  # noqa: E731
    with pytest.raises(BackendUnavailable, match=rf"Variant 'opt' .* \| got optimised for {short(other)} \(here {short(here)}\) "
                                                 rf".*fix: run 'genctl build .* --target onnxruntime --precision fp32' on this machine"):
        OnnxRuntimeBackend(Bundle.load(copy), "opt")
    OnnxRuntimeBackend(Bundle.load(built), "opt").close()  # the matching record loads


def test_bench_precision_applies_to_variant_backends_and_keeps_torch_as_baseline(built, tmp_path):
    from typer.testing import CliRunner

    from genctl.bench.runner import parse_backends
    from genctl.cli.main import app

    assert parse_backends("torch,onnxruntime,onnxruntime:fp32,onnxruntime+iobinding", "int8") == [
        ("torch", "fp32"), ("onnxruntime", "int8"), ("onnxruntime", "fp32"), ("onnxruntime+iobinding", "int8")]
    result = CliRunner().invoke(app, ["bench", str(built), "--backends", "torch,onnxruntime", "--precision", "int8",
                                      "--batch-sizes", "2", "--iters", "1", "--warmup", "0", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "b.json").read_text())
    assert [(r["backend"], r["precision"]) for r in records] == [("torch", "fp32"), ("onnxruntime", "int8")]
    assert records[1]["runtime"].endswith(" int8")


def test_int8_generator_runs_close_to_fp32(built):
    from genctl.runtime.generator import Generator

    with Generator.load(built, backend="onnxruntime", precision="int8") as gen:
        assert gen.backend.describe().endswith("int8")
        got = gen.generate({"label": [3, 7]}, n=4, seed=5).data
    with Generator.load(built, backend="onnxruntime", precision="fp32") as gen:
        ref = gen.generate({"label": [3, 7]}, n=4, seed=5).data
    err = parity.scaled_error(got, ref)
    assert 0 < err <= parity.TOLERANCE["int8"], err  # a different graph, within its tolerance


def test_gate_refuses_nan_variant_and_writes_nothing(fresh, monkeypatch):
    import genctl.optimize.build as build_mod

    manifest_before = (fresh / "manifest.json").read_bytes()
    monkeypatch.setattr(build_mod, "build_variant", poison("decode", "deconv.2.bias"))
    with pytest.raises(ParityError, match=r"decode\.sample NaN/Inf \(keep graph 'decode' in fp32: --keep-fp32 decode\)"):
        build(fresh, precision="int8", gate=FAST)
    assert (fresh / "manifest.json").read_bytes() == manifest_before
    assert sorted(p.name for p in (fresh / "graphs").iterdir()) == ["decode.onnx", "encode.onnx"]


def test_force_keeps_failed_variant_marked(fresh, monkeypatch):
    import genctl.optimize.build as build_mod

    monkeypatch.setattr(build_mod, "build_variant", poison("decode", "deconv.2.bias"))
    record = build(fresh, precision="int8", gate=FAST, force=True)
    assert record["status"] == "failed"
    manifest = json.loads((fresh / "manifest.json").read_text())
    kept = manifest["variants"]["int8"]
    assert kept["status"] == "failed" and not kept["gate"]["passed"]
    assert any(line.startswith("decode.sample NaN/Inf") for line in kept["gate"]["failures"])
    assert kept["gate"]["graphs"]["encode"]["passed"]  # the other graph is fine and says so
    Bundle.load(fresh)  # still a consistent bundle


def test_keep_fp32_is_the_fix(fresh, monkeypatch):
    import genctl.optimize.build as build_mod

    monkeypatch.setattr(build_mod, "build_variant", poison("decode", "deconv.2.bias"))
    record = build(fresh, precision="int8", gate=FAST, keep_fp32=["decode"])
    assert record["status"] == "passed"
    assert record["graphs"]["decode"]["file"] == "graphs/decode.onnx"
    assert record["graphs"]["encode"]["file"] == "graphs/encode.int8.onnx"


def test_reduce_range_only_on_x86_without_vnni():
    assert ort_variants.needs_reduce_range("x86_64", {"avx2", "fma"})  # u8s8 kernels saturate there
    assert not ort_variants.needs_reduce_range("x86_64", {"avx2", "avx512f", "avx512_vnni"})
    assert not ort_variants.needs_reduce_range("x86_64", {"avx2", "avx_vnni"})
    assert not ort_variants.needs_reduce_range("aarch64", set())
    assert ort_variants.needs_reduce_range("AMD64", set())  # flags unreadable (Windows): the safe choice
    assert ort_variants.Int8Options(reduce_range=False).reduce_range is False  # an explicit choice wins


def test_gate_refuses_a_variant_beyond_tolerance(fresh):
    # int8 is a real approximation (~1e-2 here): judged by the fp32 tolerance it must be refused.
    from genctl.optimize import gate as gate_mod

    tolerances = dict(parity.TOLERANCE, int8=parity.TOLERANCE["fp32"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gate_mod.parity, "TOLERANCE", tolerances)
        with pytest.raises(ParityError, match=r"decode\.sample error \d\.\d+e-0\d > 1e-04"):
            build(fresh, precision="int8", gate=FAST)


def test_unknown_precision_and_target(built):
    with pytest.raises(GenctlError, match=r"--precision 'int4' for target 'onnxruntime' \| got an unknown precision \| expected one of"):
        build(built, precision="int4")
    with pytest.raises(GenctlError, match=r"--precision 'int8' for target 'tensorrt'"):
        build(built, target="tensorrt", precision="int8")
    with pytest.raises(GenctlError, match=r"--target 'openvino' \| got an unknown target"):
        build(built, target="openvino", precision="fp32")
    with pytest.raises(GenctlError, match=r"--keep-fp32 'decoder' \| got no such graph \| expected one of \['decode', 'encode'\]"):
        build(built, precision="int8", keep_fp32=["decoder"])


def test_tampered_graph_refused(cvae_bundle, tampered_copy):
    tampered = tampered_copy(cvae_bundle, "decode")
    with pytest.raises(BundleError, match=r"decode\.onnx' \| got sha256 .* \(tampered or corrupted\)"):
        build(tampered, precision="int8")


@pytest.mark.parametrize("batch, message", [
    ("8:4:2", r"--batch \| got 8:4:2 \| expected MIN <= OPT <= MAX"),
    ("1:8", r"--batch \| got '1:8' \| expected MIN:OPT:MAX integers"),
    ("0:1:4", r"--batch \| got min 0 \| expected a minimum of at least 1"),
    ("1:8:100000", r"--batch \| got max 100000 \| expected <= 65536"),
])
def test_bad_batch_profiles(built, batch, message):
    with pytest.raises(GenctlError, match=message):
        build(built, precision="int8", batch=batch)


def test_tensorrt_target_without_tensorrt(built):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    manifest_before = (built / "manifest.json").read_bytes()
    with pytest.raises(BackendUnavailable, match=r"Target 'tensorrt' \| got the tensorrt package is not installed"):
        build(built, target="tensorrt", precision="fp16")
    assert (built / "manifest.json").read_bytes() == manifest_before
    assert not (built / "engines").exists()


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` really unwritable: chmod, or (as root, which ignores modes) chattr +i."""
    os.chmod(folder, 0o555)
    immutable = False
    try:
        if os.access(folder, os.W_OK) and shutil.which("chattr"):
            immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        probe = folder / ".probe"
        try:
            probe.write_bytes(b"")
            probe.unlink()
            pytest.skip("cannot make a folder read-only here (root without chattr)")
        except OSError:
            pass
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        os.chmod(folder, 0o755)


def test_read_only_bundle_refused_before_work(fresh):
    with read_only(fresh / "graphs"):
        with pytest.raises(GenctlError, match=r"Bundle '.*' \| got '.*graphs' is not writable .* \| expected a writable bundle folder"):
            build(fresh, precision="int8")
    assert sorted(p.name for p in (fresh / "graphs").iterdir()) == ["decode.onnx", "encode.onnx"]


def test_cli_build_and_one_line_errors(fresh):
    from typer.testing import CliRunner

    from genctl.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["build", str(fresh), "--target", "onnxruntime", "--precision", "fp32", "--control-samples", "0"])
    assert result.exit_code == 0, result.output
    assert "gate passed" in result.output and "graphs/decode.opt.onnx" in result.output
    assert "control skipped" in result.output
    result = runner.invoke(app, ["build", str(fresh), "--precision", "fp32", "--batch", "9:3:1"])
    assert result.exit_code == 1
    assert "error: --batch | got 9:3:1 | expected MIN <= OPT <= MAX" in result.output


@pytest.mark.slow
def test_gate_checks_control_accuracy(fresh):
    record = build(fresh, precision="int8", gate=GateConfig(control_n_per_class=10))
    control = record["gate"]["control"]
    assert control["passed"] and abs(control["drop_points"]) <= 2.0
    assert 0 <= control["variant_points"] <= 100 and control["n_per_class"] == 10
