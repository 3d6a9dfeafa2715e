"""TensorRT: profiles, cache keys, record selection and missing-package errors on CPU; real engine
builds, parity and timings under ``-m gpu`` (need ``tensorrt`` >= 10 and a CUDA GPU)."""
from __future__ import annotations

import importlib.util
import json
import time

import numpy as np
import pytest

from genctl.bundle import Bundle
from genctl.errors import BackendUnavailable, BundleError, GenctlError
from genctl.spec import GraphSpec, TensorSpec
from genctl.trt.cache import Platform, engine_key, folder_name, mismatch
from genctl.trt.profiles import DimRange, bundle_profiles, check_shapes, dim_ranges, parse_range

H100 = Platform(tensorrt="10.9.0", gpu="NVIDIA H100 80GB HBM3", compute_capability="9.0")


def ar_bundle(tmp_path, info: dict | None = None) -> Bundle:
    """An autoregressive-style bundle (in memory): prefill over ``seq``, decode with a ``past`` cache."""
    prefill = GraphSpec("prefill", inputs=[TensorSpec("tokens", "int64", ["batch", "seq"], "data", high=40)],
                        outputs=[TensorSpec("logits", "float32", ["batch", 40], "output")])
    decode = GraphSpec("decode", inputs=[TensorSpec("token", "int64", ["batch", 1], "data", high=40),
                                         TensorSpec("past_k", "float32", [2, "batch", 4, "past", 8], "state")],
                       outputs=[TensorSpec("logits", "float32", ["batch", 40], "output")])
    manifest = {"info": info if info is not None else {"max_length": 32}, "sampler": {"kind": "autoregressive"}}
    return Bundle(path=tmp_path, manifest=manifest, graphs={"prefill": prefill, "decode": decode})


# --- profiles -----------------------------------------------------------------------------------

def test_profiles_from_cvae_specs(cvae_bundle):
    bundle = Bundle.load(cvae_bundle)
    ranges = dim_ranges(bundle, "1:8:64")
    assert ranges == {"batch": DimRange(1, 8, 64)}
    profiles = bundle_profiles(bundle, ranges)
    assert profiles["decode"]["noise"] == {"min": [1, 16], "opt": [8, 16], "max": [64, 16]}
    assert profiles["decode"]["label"] == {"min": [1], "opt": [8], "max": [64]}
    assert profiles["encode"]["image"]["max"] == [64, 1, 8, 8]


def test_profiles_for_sequence_dims(tmp_path):
    bundle = ar_bundle(tmp_path)
    ranges = dim_ranges(bundle, "2:4:16")
    assert ranges["seq"] == DimRange(1, 16, 32) and ranges["past"] == DimRange(1, 16, 32)  # 1 : max/2 : max_length
    profiles = bundle_profiles(bundle, ranges)
    assert profiles["decode"]["past_k"] == {"min": [2, 2, 4, 1, 8], "opt": [2, 4, 4, 16, 8], "max": [2, 16, 4, 32, 8]}
    assert dim_ranges(bundle, "1", {"seq": "1:8:24"})["seq"] == DimRange(1, 8, 24)
    with pytest.raises(GenctlError, match=r"--dim seq \| got max 64 \| expected <= 32 \(the graphs' limit for 'seq'\)"):
        dim_ranges(bundle, "1:1:1", {"seq": "1:8:64"})
    with pytest.raises(GenctlError, match=r"--dim steps \| got a dim no graph of this bundle has \| expected one of \['batch', 'past', 'seq'\]"):
        dim_ranges(bundle, "1:1:1", {"steps": "1:2:3"})
    explicit = ar_bundle(tmp_path, {"dims": {"past": 128}, "max_length": 32})
    assert dim_ranges(explicit, "1")["past"].max == 128


@pytest.mark.parametrize("text, message", [
    ("64:8:1", r"--batch \| got 64:8:1 \| expected MIN <= OPT <= MAX"),
    ("1:x:4", r"--batch \| got '1:x:4' \| expected MIN:OPT:MAX"),
    ("0", r"--batch \| got min 0 \| expected a minimum of at least 1"),
])
def test_parse_range_errors(text, message):
    with pytest.raises(GenctlError, match=message):
        parse_range(text, "--batch")


def test_parse_range_single_value():
    assert parse_range("8", "--batch") == DimRange(8, 8, 8)


def test_feed_outside_profile_is_one_line():
    profile = {"noise": {"min": [1, 16], "opt": [8, 16], "max": [64, 16]}}
    check_shapes(profile, {"noise": (64, 16)}, "decode")
    with pytest.raises(GenctlError, match=r"Input 'noise' of engine 'decode' \| got shape \(65, 16\) \| expected between \(1, 16\) and \(64, 16\).*wider --batch"):
        check_shapes(profile, {"noise": (65, 16)}, "decode")


# --- cache keys and build records ---------------------------------------------------------------

def test_cache_key_changes_with_every_ingredient():
    shas, profiles = {"decode": "a" * 64, "encode": "b" * 64}, {"decode": {"noise": {"min": [1, 16]}}}
    base = engine_key(shas, profiles, "fp16", H100)
    assert base == engine_key(dict(reversed(list(shas.items()))), profiles, "fp16", H100)  # order-free
    variants = [
        engine_key({**shas, "decode": "c" * 64}, profiles, "fp16", H100),
        engine_key(shas, {"decode": {"noise": {"min": [2, 16]}}}, "fp16", H100),
        engine_key(shas, profiles, "fp32", H100),
        engine_key(shas, profiles, "fp16", Platform("10.8.0", H100.gpu, "9.0")),
        engine_key(shas, profiles, "fp16", Platform(H100.tensorrt, "NVIDIA A100-SXM4-80GB", "9.0")),
        engine_key(shas, profiles, "fp16", Platform(H100.tensorrt, H100.gpu, "8.0")),
    ]
    assert len({base, *variants}) == 7
    assert len(folder_name(base)) == 16 and base.startswith(folder_name(base))


def test_engine_record_for_another_gpu_is_refused(tmp_path):
    from genctl.runtime.backends.tensorrt import select_record

    bundle = ar_bundle(tmp_path)
    with pytest.raises(BundleError, match=r"TensorRT engines \(fp16\) .* \| got none built .*genctl build .* --target tensorrt --precision fp16"):
        select_record(bundle, "fp16", H100)
    a100 = Platform(H100.tensorrt, "NVIDIA A100-SXM4-80GB", "8.0")
    bundle.manifest["engines"] = {"k1": {"precision": "fp16", "platform": a100.to_json(), "status": "passed"}}
    assert mismatch(bundle.manifest["engines"]["k1"], a100) is None
    with pytest.raises(BackendUnavailable, match=r"got built for another platform: gpu 'NVIDIA A100-SXM4-80GB' \(here 'NVIDIA H100 80GB HBM3'\); compute_capability '8.0' \(here '9.0'\).*fix: run 'genctl build"):
        select_record(bundle, "fp16", H100)
    bundle.manifest["engines"]["k2"] = {"precision": "fp16", "platform": H100.to_json(), "status": "passed"}
    assert select_record(bundle, "fp16", H100) is bundle.manifest["engines"]["k2"]


def test_tensorrt_backend_without_tensorrt(cvae_bundle):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    from genctl.runtime.generator import Generator

    with pytest.raises(BackendUnavailable, match=r"^Target 'tensorrt' \| got the tensorrt package is not installed \| expected tensorrt>=10"):
        Generator.load(cvae_bundle, backend="tensorrt", precision="fp16")


def test_ort_tensorrt_provider_caches_inside_bundle(tmp_path):
    from genctl.runtime.backends.onnxruntime import provider_options

    bundle = ar_bundle(tmp_path)
    providers = provider_options(bundle, ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], "fp16")
    name, options = providers[0]
    assert name == "TensorrtExecutionProvider" and providers[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert options["trt_engine_cache_enable"] and options["trt_timing_cache_enable"] and options["trt_fp16_enable"]
    assert options["trt_engine_cache_path"] == str(tmp_path / "engines" / "ort-trt") and (tmp_path / "engines" / "ort-trt").is_dir()
    assert provider_options(bundle, ["CPUExecutionProvider"], "fp32") == ["CPUExecutionProvider"]


# --- CUDA graph capture policy ------------------------------------------------------------------

def test_capture_policy_captures_a_repeated_call_and_keeps_one_capture_per_graph():
    from genctl.runtime.backends.tensorrt import CapturePolicy

    policy = CapturePolicy()
    step4, step8 = ("step", ((4, 1, 8, 8), (4,))), ("step", ((8, 1, 8, 8), (8,)))
    assert not policy.plain_call(step4)  # first call at these shapes: plain enqueue
    assert policy.plain_call(step4)  # the loop repeats it: capture now
    policy.add(step4, "graph-4")
    assert policy.lookup(step4) == "graph-4" and policy.lookup(step8) is None
    assert not policy.plain_call(step8)  # the context runs at other shapes: the old capture goes
    assert policy.lookup(step4) is None
    assert policy.plain_call(step8)
    policy.add(step8, "graph-8")
    decode = [("decode", ((2,), (3, 2, 4, past, 16))) for past in range(1, 5)]
    assert not any(policy.plain_call(k) for k in decode)  # a growing KV cache never repeats
    assert policy.lookup(step8) == "graph-8"  # other graphs keep theirs
    assert policy.captures == 2 and policy.replays == 2


def test_capture_policy_gives_up_on_a_graph_that_failed_and_can_be_off():
    from genctl.runtime.backends.tensorrt import CapturePolicy

    policy = CapturePolicy()
    key = ("step", ((1, 4),))
    policy.plain_call(key)
    policy.fail("step", "RuntimeError: operation not permitted when stream is capturing")
    assert not policy.plain_call(key) and not policy.plain_call(key)
    off = CapturePolicy(enabled=False)
    assert not off.plain_call(key) and not off.plain_call(key)


# --- real engines (GPU machines: pytest -m gpu) -------------------------------------------------

def need_gpu():
    pytest.importorskip("tensorrt")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")


@pytest.fixture()
def gpu_bundle(cvae_bundle, copy_bundle):
    need_gpu()
    return copy_bundle(cvae_bundle, "cvae")


def _no_control():
    from genctl.optimize.gate import GateConfig

    return GateConfig(control_n_per_class=0)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_build_parity_and_cache(gpu_bundle, precision):
    from genctl.export import parity
    from genctl.optimize.build import build
    from genctl.runtime.generator import Generator

    if precision == "fp16":  # strongly typed: fp16 engines come from the fp16 ONNX variant (no FP16 flag in TensorRT 11)
        build(gpu_bundle, target="onnxruntime", precision="fp16", gate=_no_control())
    record = build(gpu_bundle, target="tensorrt", precision=precision, batch="1:8:64", gate=_no_control())
    assert record["status"] == "passed", record["gate"]["failures"]
    assert record["gate"]["loop"]["max_error"] <= parity.TOLERANCE[precision]
    engine = gpu_bundle / record["graphs"]["decode"]["file"]
    assert engine.is_file() and engine.parent.name == folder_name(record["key"])
    assert list((gpu_bundle / "engines").glob("timing-*.cache"))
    assert json.loads((gpu_bundle / "manifest.json").read_text())["engines"][record["key"]]["status"] == "passed"
    mtime = engine.stat().st_mtime_ns
    assert build(gpu_bundle, target="tensorrt", precision=precision, batch="1:8:64")["key"] == record["key"]
    assert engine.stat().st_mtime_ns == mtime  # cached, not rebuilt
    with Generator.load(gpu_bundle, backend="tensorrt", precision=precision) as trt_gen, \
            Generator.load(gpu_bundle, backend="onnxruntime") as ort_gen:
        got = trt_gen.generate({"label": [1, 4]}, n=5, seed=3).data
        ref = ort_gen.generate({"label": [1, 4]}, n=5, seed=3).data
        assert parity.scaled_error(got, ref) <= parity.TOLERANCE[precision]
        with pytest.raises(GenctlError, match=r"got shape \(70, 16\) .*wider --batch"):
            trt_gen.generate({"label": [1, 4]}, n=35, seed=3)


@pytest.mark.gpu
def test_engine_from_another_gpu_refused(gpu_bundle):
    from genctl.optimize.build import build
    from genctl.runtime.generator import Generator

    build(gpu_bundle, target="onnxruntime", precision="fp16", gate=_no_control())
    record = build(gpu_bundle, target="tensorrt", precision="fp16", batch="1:4:16", gate=_no_control())
    manifest = json.loads((gpu_bundle / "manifest.json").read_text())
    manifest["engines"][record["key"]]["platform"]["gpu"] = "Some Other GPU"
    (gpu_bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BackendUnavailable, match=r"built for another platform: gpu 'Some Other GPU'"):
        Generator.load(gpu_bundle, backend="tensorrt", precision="fp16")


@pytest.mark.gpu
def test_engine_bench_vs_onnxruntime(gpu_bundle):
    """Not a gate: prints ms per generate call so a GPU run records the numbers."""
    from genctl.optimize.build import build
    from genctl.runtime.generator import Generator

    build(gpu_bundle, target="onnxruntime", precision="fp16", gate=_no_control())
    build(gpu_bundle, target="tensorrt", precision="fp16", batch="1:64:256", gate=_no_control())
    for backend, precision in (("onnxruntime", "fp32"), ("tensorrt", "fp16")):
        with Generator.load(gpu_bundle, backend=backend, precision=precision) as gen:
            for batch in (1, 64):
                gen.generate({"label": 3}, n=batch, seed=0)  # warm-up
                start = time.perf_counter()
                for i in range(50):
                    out = gen.generate({"label": 3}, n=batch, seed=i)
                ms = (time.perf_counter() - start) / 50 * 1e3
                assert np.all(np.isfinite(out.data))
                print(f"{backend} {precision} batch {batch}: {ms:.3f} ms/generate ({gen.backend.describe()})")


@pytest.mark.gpu
def test_onnxruntime_sessions_really_got_the_gpu_provider(cvae_bundle, copy_bundle, cuda):
    """ORT falls back to the next provider quietly (its TensorRT EP is linked to one TensorRT major):
    what each session really runs on must be what genctl asked for."""
    from genctl.runtime.devices import onnxruntime_providers
    from genctl.runtime.generator import Generator

    copy = copy_bundle(cvae_bundle, "cvae")
    usable = onnxruntime_providers()[1]
    with Generator.load(copy, backend="onnxruntime") as gen:
        got = {name: session.get_providers() for name, session in gen.backend.sessions.items()}
    for name, providers in got.items():
        assert providers[0] == usable[0], f"graph '{name}': asked for {usable}, the session got {providers}"
