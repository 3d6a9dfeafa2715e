"""TensorRT-RTX: real engine builds on the CPU for every family (no GPU needed to build), manifest
records, cache keys (rebuild vs reuse), refusals; running the engines is ``-m gpu`` (a GPU of
compute capability 8.0/8.6/8.9/12.x: not the H100s the project's GPU machines have)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable, GenctlError
from genctl.io import sha256_file
from genctl.trt.cache import Platform, engine_key, mismatch
from genctl.trt.flavors import DEFAULT_RTX_CAPABILITIES, FLAVORS, parse_capabilities, refuse_gpu

trt = pytest.importorskip("tensorrt_rtx_bindings", reason="genctl[tensorrt-rtx] (Linux x86_64 / Windows wheels only)")
RTX = FLAVORS["tensorrt-rtx"]
FAMILIES = {  # family: (dataset, tiny hparams); untrained weights: an engine build needs only the graphs
    "cgan": ("digits", {"latent_dim": 8, "width": 8, "label_dim": 8}),
    "cflow": ("digits", {"scales": 1, "steps": 2, "hidden": 16, "label_dim": 4}),
    "diffusion": ("digits", {"width": 8, "groups": 4, "channel_mult": [1, 2], "timesteps": 100}),
    "charrnn": ("names", {"embed_dim": 16, "hidden": 32, "layers": 2}),
    "chartransformer": ("names", {"d_model": 32, "heads": 2, "layers": 2}),
}


@pytest.fixture(scope="module", params=["cvae", *FAMILIES])
def family_bundle(request, make_bundle, copy_bundle):
    """A copy (builds add engines) of the session cVAE, or of an untrained tiny model of the other families
    (``epochs=0``: real graphs and specs, seconds instead of a training run)."""
    if request.param == "cvae":
        return copy_bundle(request.getfixturevalue("cvae_bundle"))
    dataset, hparams = FAMILIES[request.param]
    return copy_bundle(make_bundle(request.param, dataset, epochs=0, **hparams).path)


@pytest.fixture()
def cvae_copy(cvae_bundle, copy_bundle):
    return copy_bundle(cvae_bundle, "cvae")


def rtx_build(path, **kwargs):
    from genctl.optimize.build import build

    return build(path, target="tensorrt-rtx", precision=kwargs.pop("precision", "fp32"), **{"batch": "1:4:16", **kwargs})


# --- every family and graph builds ----------------------------------------------------------------

def test_every_graph_of_every_family_builds_and_is_recorded(family_bundle):
    record = rtx_build(family_bundle)
    bundle = Bundle.load(family_bundle)
    assert set(record["graphs"]) == set(bundle.graphs)
    assert record["status"] == "built" and "no GPU of compute capability 8.0,8.6,8.9,12.0" in record["gate"]["skipped"]
    assert record["platform"] == {"tensorrt": trt.__version__, "gpu": "any", "compute_capability": "8.0,8.6,8.9,12.0",
                                  "runtime": "tensorrt-rtx"}
    assert record["material"]["runtime"] == "tensorrt-rtx" and record["material"]["tensorrt"] == trt.__version__
    for name, entry in record["graphs"].items():
        engine = family_bundle / entry["file"]
        assert engine.parent.name == record["key"][:16] and engine.stat().st_size > 1000
        assert sha256_file(engine) == entry["sha256"] and entry["source_sha256"] == bundle.graphs[name].sha256
        # every symbolic dim got a profile: int64 labels/tokens, the KV cache's past length
        for tensor in bundle.graphs[name].inputs:
            profile = record["profiles"][name][tensor.name]
            assert len(profile["min"]) == len(tensor.shape) and profile["min"] <= profile["max"]
    assert json.loads((family_bundle / "manifest.json").read_text())["engines"][record["key"]] == record
    Bundle.load(family_bundle)  # the bundle still verifies


def test_kv_cache_decode_and_fused_step_have_dynamic_profiles(family_bundle):
    bundle = Bundle.load(family_bundle)
    record = rtx_build(family_bundle)  # cached from the test above
    if bundle.family == "chartransformer":
        past = [t for t in bundle.graphs["decode"].inputs if "past" in t.shape]
        assert past and all(record["profiles"]["decode"][t.name]["min"] != record["profiles"]["decode"][t.name]["max"] for t in past)
    if bundle.family == "diffusion":
        assert {"step", "denoiser"} <= set(record["graphs"]) and record["dims"]["batch"] == [1, 4, 16]


# --- cache keys: reuse, and a rebuild on every ingredient -------------------------------------------

def test_cache_reuse_and_rebuild_on_profile_capabilities_and_precision(cvae_copy):
    from genctl.optimize.build import GateConfig, build

    first = rtx_build(cvae_copy)
    engine = cvae_copy / first["graphs"]["decode"]["file"]
    mtime = engine.stat().st_mtime_ns
    assert rtx_build(cvae_copy)["key"] == first["key"] and engine.stat().st_mtime_ns == mtime  # reused
    wider = rtx_build(cvae_copy, batch="1:8:64")
    narrower = rtx_build(cvae_copy, compute_capability="8.9")
    assert narrower["platform"]["compute_capability"] == "8.9"
    build(cvae_copy, target="onnxruntime", precision="fp16", gate=GateConfig(control_n_per_class=0))
    fp16 = rtx_build(cvae_copy, precision="fp16")
    variant = Bundle.load(cvae_copy).manifest["variants"]["fp16"]["graphs"]["decode"]
    assert fp16["graphs"]["decode"]["source_sha256"] == variant["sha256"] and fp16["graphs"]["decode"]["source"] == variant["file"]
    keys = {first["key"], wider["key"], narrower["key"], fp16["key"]}
    assert len(keys) == 4 and set(Bundle.load(cvae_copy).manifest["engines"]) == keys
    assert {p.name for p in (cvae_copy / "engines").iterdir()} == {k[:16] for k in keys}
    assert engine.stat().st_mtime_ns == mtime  # other builds never touch this folder


def test_rebuild_on_a_changed_graph(cvae_copy):
    first = rtx_build(cvae_copy)
    model = onnx.load(cvae_copy / "graphs" / "decode.onnx")
    model.doc_string = "re-exported"  # different bytes, same graph: a new sha256 all the same
    replace_graph(cvae_copy, "decode", model)
    second = rtx_build(cvae_copy)
    assert second["key"] != first["key"]
    assert second["graphs"]["decode"]["source_sha256"] != first["graphs"]["decode"]["source_sha256"]


def test_key_covers_version_and_capability_list():
    shas, profiles = {"decode": "a" * 64}, {"decode": {"noise": {"min": [1, 16]}}}
    base = Platform("1.7.1.116", "any", "8.0,8.6,8.9,12.0", "tensorrt-rtx")
    keys = {engine_key(shas, profiles, "fp32", p) for p in (
        base, Platform("1.8.0.1", "any", base.compute_capability, "tensorrt-rtx"),
        Platform(base.tensorrt, "any", "8.6,8.9", "tensorrt-rtx"), Platform(base.tensorrt, "any", base.compute_capability, "tensorrt"))}
    assert len(keys) == 4


def test_capability_list_record_runs_on_any_listed_gpu_only():
    record = {"platform": Platform("1.7.1.116", "any", "8.0,8.6,8.9,12.0", "tensorrt-rtx").to_json()}
    assert mismatch(record, Platform("1.7.1.116", "NVIDIA L4", "8.9", "tensorrt-rtx")) is None
    assert mismatch(record, Platform("1.7.1.116", "NVIDIA H100 80GB HBM3", "9.0", "tensorrt-rtx")) == \
        "compute_capability '8.0,8.6,8.9,12.0' (here '9.0')"
    assert "tensorrt '1.7.1.116' (here '1.8.0')" in mismatch(record, Platform("1.8.0", "NVIDIA L4", "8.9", "tensorrt-rtx"))


# --- refusals ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("9.0", r"--compute-capability '9.0' \| got unsupported 9.0 \| expected a comma-separated list of 8.0, 8.6, 8.9, 12.0, 12.1 or 'current'"),
    ("8.6,sm89", r"got unsupported sm89"),
    (",", r"got unsupported nothing"),
])
def test_bad_compute_capability_is_one_line(text, message):
    with pytest.raises(GenctlError, match=message):
        parse_capabilities(text, RTX, None)


def test_compute_capability_parsing():
    assert parse_capabilities(None, RTX, None) == DEFAULT_RTX_CAPABILITIES
    assert parse_capabilities("12.0, 8.9,8.9", RTX, None) == ("8.9", "12.0")
    assert parse_capabilities("current", RTX, "8.6") == ("8.6",)
    with pytest.raises(GenctlError, match=r"--compute-capability current \| got no CUDA GPU on this machine"):
        parse_capabilities("current", RTX, None)
    with pytest.raises(GenctlError, match=r"--compute-capability \| got target 'tensorrt' \| expected target tensorrt-rtx"):
        parse_capabilities("8.6", FLAVORS["tensorrt"], None)


def test_cli_bad_compute_capability_writes_nothing(cvae_copy):
    from typer.testing import CliRunner

    from genctl.cli.main import app

    before = (cvae_copy / "manifest.json").read_bytes()
    result = CliRunner().invoke(app, ["build", str(cvae_copy), "--target", "tensorrt-rtx", "--precision", "fp32",
                                      "--compute-capability", "9.0"])
    assert result.exit_code == 1 and "error: --compute-capability '9.0' | got unsupported 9.0" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert (cvae_copy / "manifest.json").read_bytes() == before and not (cvae_copy / "engines").exists()


def test_cli_builds_and_reports(cvae_copy):
    from typer.testing import CliRunner

    from genctl.cli.main import app

    result = CliRunner().invoke(app, ["build", str(cvae_copy), "--target", "tensorrt-rtx", "--precision", "fp32",
                                      "--batch", "1:2:8", "--compute-capability", "8.6,12.0"])
    assert result.exit_code == 0, result.output
    assert "tensorrt-rtx fp32: built for compute capability 8.6,12.0 (decode" in result.output and "gate not run" in result.output


def test_parser_rejection_names_graph_and_node_and_writes_nothing(cvae_copy):
    model = onnx.load(cvae_copy / "graphs" / "decode.onnx")
    out = model.graph.output[0].name
    last = model.graph.node[-1]
    last.output[0] = "before_mystery"
    model.graph.node.append(onnx.helper.make_node("Mystery", ["before_mystery"], [out], name="mystery_node", domain="com.example"))
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    replace_graph(cvae_copy, "decode", model)
    before = (cvae_copy / "manifest.json").read_bytes()
    with pytest.raises(GenctlError, match=r"^TensorRT-RTX ONNX parser on graph 'decode' \| got node 'mystery_node' \(Mystery\): .*fix: use --target onnxruntime"):
        rtx_build(cvae_copy)
    assert (cvae_copy / "manifest.json").read_bytes() == before
    assert not any((cvae_copy / "engines").iterdir()) if (cvae_copy / "engines").exists() else True


def test_fp16_needs_the_fp16_variant(cvae_copy):
    with pytest.raises(GenctlError, match=r"fp16 engines of bundle .* \| got no fp16 ONNX variant .*fix: run 'genctl build .* --target onnxruntime --precision fp16' first"):
        rtx_build(cvae_copy, precision="fp16")


def test_backend_refuses_without_a_supported_gpu(cvae_copy):
    from genctl.runtime.backends import auto_backend
    from genctl.runtime.devices import gpu_compute_capability
    from genctl.runtime.generator import Generator

    rtx_build(cvae_copy)
    here = gpu_compute_capability()
    if here in RTX.capabilities:
        pytest.skip(f"this GPU (compute capability {here}) runs TensorRT-RTX")
    got = "no CUDA GPU \\(compute capability: none\\)" if here is None else f"a GPU of compute capability {here} "
    with pytest.raises(BackendUnavailable, match=rf"^Backend 'tensorrt-rtx' \| got {got}.*\| expected (a GPU of )?compute capability 8.0, 8.6, 8.9, 12.0, 12.1 \| fix: use --backend tensorrt \(TensorRT engines\) or onnxruntime$"):
        Generator.load(cvae_copy, backend="tensorrt-rtx")
    assert auto_backend(Bundle.load(cvae_copy)) != "tensorrt-rtx"


def test_refusal_on_an_h100_names_its_capability():
    with pytest.raises(BackendUnavailable, match=r"got a GPU of compute capability 9.0 \(NVIDIA H100 80GB HBM3\) \| expected compute capability 8.0, 8.6, 8.9, 12.0, 12.1 \| fix: use --backend tensorrt"):
        refuse_gpu(RTX, "9.0", "NVIDIA H100 80GB HBM3")
    refuse_gpu(RTX, "8.9", "NVIDIA L4")  # supported: no error


def test_doctor_shows_tensorrt_rtx():
    from genctl.cli.doctor import checks

    row = next(r for r in checks() if r[0] == "tensorrt-rtx")
    assert row[1] == trt.__version__ and "builds engines here" in row[2] or "usable" in row[2]


def replace_graph(bundle_path, name: str, model) -> None:
    """Write a new graph file and its sha256 into the manifest (as a re-export would)."""
    onnx.save(model, bundle_path / "graphs" / f"{name}.onnx")
    manifest = json.loads((bundle_path / "manifest.json").read_text())
    manifest["graphs"][name]["sha256"] = sha256_file(bundle_path / "graphs" / f"{name}.onnx")
    (bundle_path / "manifest.json").write_text(json.dumps(manifest))


# --- running the engines (a GPU of compute capability 8.0/8.6/8.9/12.x: pytest -m gpu) --------------

@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engines_run_gated_and_match_onnxruntime(cvae_copy, precision):
    from genctl.export import parity
    from genctl.optimize.build import GateConfig, build
    from genctl.runtime.devices import gpu_compute_capability
    from genctl.runtime.generator import Generator

    if gpu_compute_capability() not in RTX.capabilities:
        pytest.skip(f"no GPU of compute capability {', '.join(RTX.capabilities)} (found {gpu_compute_capability()})")
    if precision == "fp16":
        build(cvae_copy, target="onnxruntime", precision="fp16", gate=GateConfig(control_n_per_class=0))
    record = build(cvae_copy, target="tensorrt-rtx", precision=precision, batch="1:8:64", gate=GateConfig(control_n_per_class=0))
    assert record["status"] == "passed", record["gate"]["failures"]
    with Generator.load(cvae_copy, backend="tensorrt-rtx", precision=precision) as rtx, \
            Generator.load(cvae_copy, backend="onnxruntime") as ort:
        assert rtx.backend.describe().startswith("tensorrt-rtx[")
        got, ref = rtx.generate({"label": [1, 4]}, n=5, seed=3).data, ort.generate({"label": [1, 4]}, n=5, seed=3).data
        assert np.all(np.isfinite(got)) and parity.scaled_error(got, ref) <= parity.TOLERANCE[precision]
