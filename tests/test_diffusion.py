"""diffusion family: schedule math, training, fused step export, parity, sampler controls."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from genctl.errors import BundleError, ConditionError, GenctlError
from genctl.families import schedule
from genctl.runtime.generator import Generator
from genctl.runtime.samplers.diffusion import guidance_sweep

T = 100  # tiny schedule so 50-step runs and "steps > T" are cheap
TINY = {"width": 8, "groups": 4, "channel_mult": [1, 2], "timesteps": T}


@pytest.fixture(scope="module")
def bundle(make_bundle):
    return make_bundle("diffusion", epochs=2, **TINY).bundle


@pytest.fixture(scope="module")
def no_dropout_bundle(make_bundle):
    return make_bundle("diffusion", epochs=1, **TINY, cfg_dropout=0.0).bundle


@pytest.fixture(scope="module")
def gens(bundle):
    with Generator.load(bundle, backend="torch") as ref, Generator.load(bundle, backend="onnxruntime") as ort:
        yield ref, ort


def rel_l2(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(got.astype(np.float64) - ref) / np.linalg.norm(ref.astype(np.float64)))


# ------------------------------------------------------------------------------ schedule math

def test_ddim_with_eta_one_is_the_ddpm_ancestral_step():
    """DDIM eq. 12/16 with eta=1 == DDPM posterior mean (eq. 7) + sqrt(beta~_t) z (eq. 11 / Alg. 2)."""
    ab = schedule.alphas_cumprod(schedule.betas_for("linear", 1000))
    g = torch.Generator().manual_seed(0)
    x_t, eps, z = (torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
    t = 500
    a_t, a_prev = torch.full((4,), ab[t], dtype=torch.float64), torch.full((4,), ab[t - 1], dtype=torch.float64)
    got = schedule.ddim_update(x_t, eps, a_t, a_prev, torch.ones(4, dtype=torch.float64), z, clip=False)
    beta, alpha = 1 - ab[t] / ab[t - 1], ab[t] / ab[t - 1]
    x0 = (x_t - math.sqrt(1 - ab[t]) * eps) / math.sqrt(ab[t])
    mean = math.sqrt(ab[t - 1]) * beta / (1 - ab[t]) * x0 + math.sqrt(alpha) * (1 - ab[t - 1]) / (1 - ab[t]) * x_t
    var = (1 - ab[t - 1]) / (1 - ab[t]) * beta
    torch.testing.assert_close(got, mean + math.sqrt(var) * z, rtol=1e-9, atol=1e-9)


def test_timesteps_and_coefficients():
    assert schedule.timesteps(100, 100).tolist() == list(range(99, -1, -1))
    assert schedule.timesteps(100, 1).tolist() == [99]
    ts = schedule.timesteps(1000, 50)
    assert ts[0] == 999 and ts[-1] == 0 and len(set(ts.tolist())) == 50
    ab = schedule.alphas_cumprod(schedule.betas_for("cosine", 1000))
    a_t, a_prev = schedule.step_coefficients(ab, ts)
    assert a_prev[-1] == 1.0 and np.all(a_prev[:-1] == a_t[1:]) and np.all(np.diff(ab) < 0)


def test_dpm_solver_2m_coefficients():
    """First order (x0_delta_coef 0) on the first step and the last two; elsewhere A / (2r) with
    r = h_prev / h; the first-order update x_coef x + x0_coef x0 is deterministic DDIM."""
    ab = schedule.alphas_cumprod(schedule.betas_for("linear", 1000))
    ts = schedule.timesteps(1000, 20)
    c = schedule.dpm_solver_2m_coefficients(ab, ts)
    assert c["order"].tolist() == [1] + [2] * 17 + [1, 1]
    assert np.all(c["x0_delta_coef"][[0, -2, -1]] == 0) and np.all(c["x0_delta_coef"][1:-2] > 0)
    lam = 0.5 * np.log(ab[ts] / (1 - ab[ts]))
    np.testing.assert_allclose(c["lambda_s"], lam, rtol=1e-12)
    assert np.isinf(c["h"][-1]) and np.allclose(c["h"][:-1], np.diff(lam))
    i = 5
    np.testing.assert_allclose(c["x0_delta_coef"][i], c["x0_coef"][i] / (2 * c["h"][i - 1] / c["h"][i]), rtol=1e-12)
    a_t, a_prev = schedule.step_coefficients(ab, ts)  # DDIM(eta=0): sqrt(a_prev) x0 + sqrt(1 - a_prev) eps
    ab_s, ab_t = ab[ts], np.concatenate([ab[ts[1:]], [1.0]])
    np.testing.assert_allclose(c["x0_coef"], np.sqrt(ab_t) - np.sqrt(1 - ab_t) * np.sqrt(ab_s) / np.sqrt(1 - ab_s), atol=1e-12)
    np.testing.assert_allclose(c["x_coef"], np.sqrt(1 - ab_t) / np.sqrt(1 - ab_s), rtol=1e-12)
    for steps in (1, 2, 3):  # no second-order step fits
        assert np.all(schedule.dpm_solver_2m_coefficients(ab, schedule.timesteps(1000, steps))["x0_delta_coef"] == 0)


def test_solver_update_with_zero_coefficient_is_ddim_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    x_t, eps, z, x0_prev = (torch.randn(3, 1, 8, 8, generator=g) for _ in range(4))
    a_t, a_prev, eta = torch.tensor([0.05, 0.5, 0.9]), torch.tensor([0.5, 0.9, 1.0]), torch.tensor([0.0, 0.5, 1.0])
    ddim = schedule.ddim_update(x_t, eps, a_t, a_prev, eta, z)
    x_prev, x0 = schedule.solver_update(x_t, eps, a_t, a_prev, eta, z, x0_prev, torch.zeros(3))
    assert torch.equal(x_prev, ddim) and x0.abs().max() <= 1.0
    assert torch.equal(schedule.solver_update(x_t, eps, a_t, a_prev, eta, z), ddim)  # an old step graph's call


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_dpm_solver_2m_converges_faster_than_ddim_on_gaussian_data(kind):
    """Data ~ N(m, v): the exact eps is known and the probability-flow ODE maps x_T to
    m + sqrt(v) z with z = (x_T - a_T m) / sqrt(a_T^2 v + s_T^2). The graph-side update
    (solver_update, float64, no clipping) with the host coefficients: DDIM's error halves with
    twice the steps (first order), DPM-Solver++(2M)'s falls much faster."""
    T, m, v = 1000, 0.3, 0.05
    ab = schedule.alphas_cumprod(schedule.betas_for(kind, T))
    x_T = torch.randn(16, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = m + math.sqrt(v) * (x_T - math.sqrt(ab[-1]) * m) / math.sqrt(ab[-1] * v + 1 - ab[-1])

    def run(steps: int, solver: str) -> float:
        ts = schedule.timesteps(T, steps)
        _, a_prev = schedule.step_coefficients(ab, ts)
        coef = schedule.dpm_solver_2m_coefficients(ab, ts)["x0_delta_coef"] if solver == "dpm" else np.zeros(steps)
        row = lambda v: torch.full((16,), float(v), dtype=torch.float64)  # noqa: E731
        x, x0 = x_T, torch.zeros_like(x_T)
        for i, t in enumerate(ts):
            eps = math.sqrt(1 - ab[t]) * (x - math.sqrt(ab[t]) * m) / (ab[t] * v + 1 - ab[t])
            x, x0 = schedule.solver_update(x, eps, row(ab[t]), row(a_prev[i]), row(0), torch.zeros_like(x), x0, row(coef[i]),
                                           clip=False)
        return float((x - exact).abs().mean())

    errors = {steps: (run(steps, "ddim"), run(steps, "dpm")) for steps in (20, 40, 80)}
    assert all(dpm < ddim for ddim, dpm in errors.values()), errors
    assert errors[20][0] / errors[80][0] < 5 and errors[20][1] / errors[80][1] > 15, errors


# ---------------------------------------------------------------------------- bundle + parity

def test_manifest_describes_step_denoiser_and_schedule(bundle):
    m = bundle.manifest
    assert set(bundle.graphs) == {"step", "denoiser"}
    step = bundle.graphs["step"]
    assert step.input_names == ["x_t", "t", "alpha_bar_t", "alpha_bar_prev", "label", "guidance_scale", "eta", "noise",
                                "x0_prev", "x0_delta_coef"]
    assert step.output_names == ["x_prev", "x0_out"] and step.feeds_back == {"x_prev": "x_t", "x0_out": "x0_prev"}
    assert step.input("t").high == T and step.input("label").high == 11
    assert bundle.graphs["denoiser"].input_names == ["x_t", "t", "label"]
    assert m["sampler"]["defaults"] == {"steps": 50, "guidance_scale": 3.0, "eta": 0.0, "sampler": "ddim"}
    assert m["sampler"]["cfg_dropout"] == 0.1 and m["sampler"]["null_label"] == 10
    sched = m["info"]["schedule"]
    assert sched["timesteps"] == T and len(sched["betas"]) == T and sched["kind"] == "linear"


def test_graph_parity_of_step_and_denoiser(bundle):
    for name, outs in (("step", ("x_prev", "x0_out")), ("denoiser", ("eps",))):
        report = bundle.manifest["parity"]["graphs"][name]
        assert report["passed"] and report["batches"] == [1, 7]
        assert all(report["outputs"][out] <= 1e-4 for out in outs)


def test_loop_parity_recorded_at_export(bundle):
    loop = bundle.manifest["parity"]["loop"]
    assert loop["passed"] and loop["max_error"] <= loop["tolerance"]


def test_full_ddim_run_torch_vs_onnxruntime_relative_l2(gens):
    ref, ort = gens
    a = ref.generate({"label": [0, 3, 7]}, n=4, seed=11, steps=50, guidance_scale=3.0, eta=0.0)
    b = ort.generate({"label": [0, 3, 7]}, n=4, seed=11, steps=50, guidance_scale=3.0, eta=0.0)
    assert a.data.shape == (12, 1, 8, 8) and a.meta["steps"] == 50 and len(a.meta["step_s"]) == 50
    assert rel_l2(b.data, a.data) <= 1e-3


def test_ddpm_sampler_with_per_step_noise_matches_across_backends(gens):
    ref, ort = gens
    a = ref.generate({"label": 5}, n=3, seed=2, steps=25, sampler="ddpm")
    b = ort.generate({"label": 5}, n=3, seed=2, steps=25, sampler="ddpm")
    assert a.meta["eta"] == 1.0 and rel_l2(b.data, a.data) <= 1e-3
    c = ort.generate({"label": 5}, n=3, seed=3, steps=25, sampler="ddpm")
    assert not np.allclose(b.data, c.data)  # the seed drives x_T and every step's noise


def test_dpmpp_2m_loop_torch_vs_onnxruntime(gens):
    """The whole DPM-Solver++(2M) loop (x0_out fed back as x0_prev) on both backends, same seed."""
    from genctl.export.parity import scaled_error

    ref, ort = gens
    a = ref.generate({"label": [0, 3, 7]}, n=3, seed=11, steps=20, guidance_scale=3.0, sampler="dpmpp-2m")
    b = ort.generate({"label": [0, 3, 7]}, n=3, seed=11, steps=20, guidance_scale=3.0, sampler="dpmpp-2m", eta=0.7)
    assert a.meta["sampler"] == "dpmpp-2m" and b.meta["eta"] == 0.0 and len(a.meta["step_s"]) == 20  # eta: ddim only
    assert scaled_error(b.data, a.data) <= 1e-4
    ddim = ort.generate({"label": [0, 3, 7]}, n=3, seed=11, steps=20, guidance_scale=3.0)
    assert np.abs(ddim.data - b.data).max() > 1e-3  # the second-order steps do change the samples
    assert b.data.min() >= -1.0 and b.data.max() <= 1.0


def test_dpmpp_2m_at_20_steps_is_closer_to_a_long_ddim_run_than_ddim_at_20(gens):
    """The solver's point, on the tiny trained model: with 20 steps, DPM-Solver++(2M) lands nearer
    the deterministic DDIM run over every training timestep (T=100 steps, same seed) than DDIM with
    20 steps does. Measured: mean |diff| 0.0041 vs 0.0081 (guidance 3), 0.0026 vs 0.0071 (guidance 1)."""
    _, ort = gens
    cond, kw = {"label": list(range(10))}, {"n": 4, "seed": 0, "guidance_scale": 3.0}
    long = ort.generate(cond, steps=T, eta=0.0, **kw).data
    ddim = np.abs(ort.generate(cond, steps=20, eta=0.0, **kw).data - long).mean()
    dpm = np.abs(ort.generate(cond, steps=20, sampler="dpmpp-2m", **kw).data - long).mean()
    assert dpm < 0.75 * ddim, (dpm, ddim)


def test_io_binding_loop_matches_plain_onnxruntime(gens):
    """x_t stays a tensor across the steps (the GPU path's IO binding, run on the CPU provider)."""
    from genctl.runtime.backends.onnxruntime import OnnxRuntimeBackend

    _, ort = gens
    with Generator(ort.bundle, OnnxRuntimeBackend(ort.bundle, io_binding=True)) as g:
        for controls in ({"steps": 20, "guidance_scale": 3.0}, {"steps": 10, "sampler": "ddpm"}, {"steps": 10, "sampler": "dpmpp-2m"}):
            a = ort.generate({"label": [2, 9]}, n=3, seed=4, **controls)
            b = g.generate({"label": [2, 9]}, n=3, seed=4, **controls)
            assert isinstance(b.data, np.ndarray) and b.data.shape == a.data.shape
            assert rel_l2(b.data, a.data) <= 1e-6
        spec = g.bundle.graphs["step"]
        feeds = {t.name: g.backend.put(np.zeros(t.concrete({"batch": 2}), dtype=t.dtype)) for t in spec.inputs}
        assert all(isinstance(v, torch.Tensor) for v in feeds.values())
        assert isinstance(g.backend.run_values("step", feeds)["x_prev"], torch.Tensor)
        with pytest.raises(GenctlError, match=r"Input 'x_t' of graph 'step' \| got dtype torch.float64 \| expected float32"):
            g.backend.run_values("step", {**feeds, "x_t": feeds["x_t"].double()})


@pytest.mark.gpu
def test_gpu_onnxruntime_keeps_x_t_on_the_device_and_matches_cpu(cuda, gens):
    from genctl.runtime.backends.onnxruntime import OnnxRuntimeBackend

    _, cpu = gens
    backend = OnnxRuntimeBackend(cpu.bundle)  # a GPU provider turns IO binding on
    assert backend.values is not None and backend.values.device == "cuda", backend.describe()
    with Generator(cpu.bundle, backend) as g:
        for controls in ({"steps": 20, "guidance_scale": 3.0}, {"steps": 10, "sampler": "ddpm"}):
            a = cpu.generate({"label": [2, 9]}, n=3, seed=4, **controls)
            b = g.generate({"label": [2, 9]}, n=3, seed=4, **controls)
            assert rel_l2(b.data, a.data) <= 1e-3


def test_io_binding_binds_each_step_shape_once_and_reuses_it(gens):
    """Persistent bindings: from the second step on, the step runs on one slot whose buffers were
    bound once (x_prev copied back into x_t); a new batch size gets its own slot; the samples are
    those of plain session.run; a slot's output is overwritten only by the next call."""
    from genctl.runtime.backends.onnxruntime import OnnxRuntimeBackend

    _, ort = gens
    with Generator(ort.bundle, OnnxRuntimeBackend(ort.bundle, io_binding=True)) as g:
        slots = g.backend.slots
        a = ort.generate({"label": [2, 9]}, n=3, seed=4, steps=12, guidance_scale=3.0)
        b = g.generate({"label": [2, 9]}, n=3, seed=4, steps=12, guidance_scale=3.0)
        assert rel_l2(b.data, a.data) <= 1e-6
        (slot,) = slots.slots["step"].values()
        assert slot.runs == 10  # steps 3..12; steps 1 and 2 bound per call (2 saw the shape repeat)
        binding, buffers = slot.binding, {k: v.data_ptr() for k, v in slot.inputs.items()}
        g.generate({"label": [2, 9]}, n=3, seed=5, steps=12, guidance_scale=3.0)
        assert slot.runs == 22 and slot.binding is binding  # reused across calls: never rebound
        assert {k: v.data_ptr() for k, v in slot.inputs.items()} == buffers
        c = g.generate({"label": [2, 9]}, n=1, seed=4, steps=12, guidance_scale=3.0)
        assert slots.count("step") == 2 and c.data.shape[0] == 2
        np.testing.assert_allclose(c.data, ort.generate({"label": [2, 9]}, n=1, seed=4, steps=12, guidance_scale=3.0).data,
                                   rtol=0, atol=1e-5)


def test_onnxruntime_cuda_graphs_need_a_gpu(gens):
    from genctl.errors import BackendUnavailable
    from genctl.runtime.backends import open_backend

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the gpu tests run CUDA graphs")
    with pytest.raises(BackendUnavailable, match=r"Backend option '\+cudagraphs' of 'onnxruntime' \| got no usable CUDA "
                                                 r"execution provider \| expected an NVIDIA GPU .* \| fix: use 'onnxruntime'"):
        open_backend(gens[1].bundle, "onnxruntime+cudagraphs")


def test_torch_loop_on_tensor_values_matches_numpy_calls(gens):
    """The torch backend's device-resident loop (x_t kept as a tensor between steps, as on CUDA),
    run on CPU tensors: the same samples as the numpy path."""
    from genctl.runtime.backends.base import TorchValues

    ref, _ = gens
    with Generator.load(ref.bundle, backend="torch+cpu") as g:
        g.backend.values = TorchValues("cpu")
        for controls in ({"steps": 8, "guidance_scale": 3.0}, {"steps": 5, "sampler": "ddpm"}, {"steps": 6, "sampler": "dpmpp-2m"}):
            a = ref.generate({"label": [2, 9]}, n=2, seed=4, **controls)
            b = g.generate({"label": [2, 9]}, n=2, seed=4, **controls)
            assert rel_l2(b.data, a.data) <= 1e-6


@pytest.mark.gpu
def test_gpu_torch_baselines_keep_x_t_on_the_device_and_match_cpu(cuda, gens):
    _, cpu = gens
    for name in ("torch", "torch-compile"):
        with Generator.load(cpu.bundle, backend=name) as g:
            assert g.backend.describe() == f"{name}[cuda]" and g.backend.values.device == "cuda"
            for _ in range(2):  # the second run replays torch.compile's CUDA graphs
                a = cpu.generate({"label": [2, 9]}, n=3, seed=4, steps=20, guidance_scale=3.0)
                b = g.generate({"label": [2, 9]}, n=3, seed=4, steps=20, guidance_scale=3.0)
                assert rel_l2(b.data, a.data) <= 1e-3


@pytest.mark.gpu
def test_gpu_onnxruntime_cuda_graphs_replay_the_step_and_match_cpu(cuda, gens):
    from genctl.runtime.backends.onnxruntime import OnnxRuntimeBackend

    _, cpu = gens
    with Generator(cpu.bundle, OnnxRuntimeBackend(cpu.bundle, cuda_graphs=True)) as g:
        assert g.backend.describe().endswith("+iobinding+cudagraphs")
        for seed in (4, 5):  # the second call replays the captured graph
            a = cpu.generate({"label": [2, 9]}, n=3, seed=seed, steps=20, guidance_scale=3.0)
            b = g.generate({"label": [2, 9]}, n=3, seed=seed, steps=20, guidance_scale=3.0)
            assert rel_l2(b.data, a.data) <= 1e-3
        assert g.backend.slots.count("step") == 1
        assert "step" not in g.backend.uncaptured  # measured on an H100: ORT captures the DDIM step


@pytest.mark.gpu
def test_gpu_onnxruntime_graph_refusing_cuda_graphs_runs_without_them(cuda, gens):
    """ORT refuses CUDA graphs for a graph with a Memcpy between CPU and GPU nodes (here a Where on
    bool values, which has no CUDA kernel): the backend loads that graph without them and says so."""
    from onnx import TensorProto, helper

    from genctl.runtime.backends.onnxruntime import OnnxRuntimeBackend

    io = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Greater", ["a", "b"], ["m"]), helper.make_node("Where", ["m", "m", "c"], ["w"]),
         helper.make_node("Cast", ["w"], ["y"], to=TensorProto.FLOAT)], "probe",
        [io("a", TensorProto.FLOAT, [4]), io("b", TensorProto.FLOAT, [4]), io("c", TensorProto.BOOL, [4])],
        [io("y", TensorProto.FLOAT, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    backend = OnnxRuntimeBackend(gens[1].bundle, cuda_graphs=True)
    try:
        session = backend._session("probe", model.SerializeToString())
        assert "probe" in backend.uncaptured and backend.describe().endswith("+cudagraphs(not probe)")
        feeds = {"a": np.array([0, 2, 0, 2], np.float32), "b": np.ones(4, np.float32), "c": np.array([1, 0, 0, 1], bool)}
        assert session.run(None, feeds)[0].tolist() == [1.0, 1.0, 0.0, 1.0]
    finally:
        backend.close()


@pytest.mark.gpu
@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-3), ("fp16", 3e-2)])
def test_tensorrt_step_loop_with_cuda_graphs(tensorrt, bundle, gens, copy_bundle, precision, tolerance):
    """Engines for the fused step: x_t stays on the GPU, the step is captured once and replayed;
    captured and plain enqueues agree, and both match ONNX Runtime on CPU."""
    from genctl.optimize.build import GateConfig, build
    from genctl.runtime.backends.tensorrt import TensorRTBackend

    path = copy_bundle(bundle.path, "diffusion")
    record = build(path, target="tensorrt", precision=precision, batch="1:8:16", gate=GateConfig(control_n_per_class=0))
    assert record["status"] == "passed", record["gate"]["failures"]
    _, cpu = gens
    with Generator.load(path, backend="tensorrt", precision=precision) as g, \
            Generator(g.bundle, TensorRTBackend(g.bundle, precision, cuda_graphs=False)) as plain:
        for controls in ({"steps": 20, "guidance_scale": 3.0}, {"steps": 10, "sampler": "ddpm"}):
            ref = cpu.generate({"label": [2, 9]}, n=3, seed=4, **controls)
            got = g.generate({"label": [2, 9]}, n=3, seed=4, **controls)
            assert not g.backend.capture.failed and "step" in g.backend.capture.captured
            np.testing.assert_allclose(got.data, plain.generate({"label": [2, 9]}, n=3, seed=4, **controls).data,
                                       atol=1e-5)
            assert rel_l2(got.data, ref.data) <= tolerance
        assert "+cudagraphs" in g.backend.describe() and not plain.backend.capture.captured


def test_denoiser_graph_accepts_the_null_label(gens):
    ref, ort = gens
    rng = np.random.default_rng(0)
    feeds = {"x_t": rng.standard_normal((3, 1, 8, 8)).astype(np.float32), "t": np.array([0, 50, 99]),
             "label": np.array([10, 10, 2])}
    a, b = ref.backend.run("denoiser", feeds)["eps"], ort.backend.run("denoiser", feeds)["eps"]
    assert np.abs(a - b).max() <= 1e-4


def test_guidance_changes_samples_and_ddim_is_deterministic(gens):
    _, ort = gens
    g0 = ort.generate({"label": 4}, n=4, seed=0, steps=20, guidance_scale=0.0)
    g3 = ort.generate({"label": 4}, n=4, seed=0, steps=20, guidance_scale=3.0)
    again = ort.generate({"label": 4}, n=4, seed=0, steps=20, guidance_scale=3.0)
    assert np.abs(g0.data - g3.data).max() > 1e-2
    np.testing.assert_array_equal(g3.data, again.data)
    assert g3.data.min() >= -1.0 and g3.data.max() <= 1.0


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("controls, match", [
    ({"steps": 0}, r"--steps \| got 0 \| expected a value in \[1"),
    ({"steps": T + 1}, rf"--steps \| got {T + 1} \| expected a value in \[1, {T}\] \(the model's training timesteps\)"),
    ({"guidance_scale": float("nan")}, r"--guidance-scale \| got NaN"),
    ({"guidance_scale": -1.0}, r"--guidance-scale \| got -1.0 \| expected a value in \[0.0"),
    ({"eta": 2.0}, r"--eta \| got 2.0 \| expected a value in \[0.0, 1.0\]"),
    ({"sampler": "foo"}, r"--sampler \| got 'foo' \| expected one of \['ddim', 'ddpm', 'dpmpp-2m'\]"),
    ({"temperature": 1.0}, r"Control 'temperature' \| got a control this model's sampler does not use"),
])
def test_invalid_controls_are_one_line_errors(gens, controls, match):
    _, ort = gens
    with pytest.raises(ConditionError, match=match) as info:
        ort.generate({"label": 1}, n=1, seed=0, **controls)
    assert "\n" not in str(info.value)


@pytest.mark.slow  # trains and exports a second bundle
def test_guidance_on_a_model_trained_without_null_dropout_is_refused(no_dropout_bundle):
    assert no_dropout_bundle.manifest["sampler"]["defaults"]["guidance_scale"] == 1.0
    with Generator.load(no_dropout_bundle, backend="onnxruntime") as gen:
        assert gen.generate({"label": 1}, n=2, seed=0, steps=5).data.shape == (2, 1, 8, 8)  # w=1 works
        with pytest.raises(ConditionError, match=r"--guidance-scale \| got 3.0 \| expected 1 .*cfg_dropout=0"):
            gen.generate({"label": 1}, n=2, seed=0, steps=5, guidance_scale=3.0)


@pytest.mark.slow  # exports a second bundle
def test_bundle_exported_before_dpm_solver_runs_ddim_and_ddpm_and_refuses_dpmpp(make_bundle, gens, tmp_path, monkeypatch):
    """An old-style bundle, exported from the same checkpoint with the step graph's I/O as it was
    before DPM-Solver++ (no x0_prev / x0_delta_coef inputs, no x0_out output; the module, called
    without them, is the old DDIM step): ddim and ddpm give the new bundle's samples on both
    backends, and dpmpp-2m is a one-line error naming the re-export."""
    import re

    import onnx

    from genctl.export import export_bundle
    from genctl.families.base import GraphDef
    from genctl.families.diffusion import Diffusion
    from genctl.spec import GraphSpec

    graphs = Diffusion.graphs

    def old_graphs(self, model, config):
        out = graphs(self, model, config)
        step = out["step"]
        spec = GraphSpec("step", inputs=step.spec.inputs[:-2], outputs=step.spec.outputs[:1], feeds_back={"x_prev": "x_t"},
                         doc="one CFG denoising step (before DPM-Solver++)")
        out["step"] = GraphDef(step.module, {k: step.example[k] for k in spec.input_names}, spec)
        return out

    trained = make_bundle("diffusion", epochs=2, **TINY)
    with monkeypatch.context() as patch:
        patch.setattr(Diffusion, "graphs", old_graphs)
        old = export_bundle(trained.checkpoint, tmp_path / "old")
    step = onnx.load(str(old.path / "graphs" / "step.onnx"))
    assert [i.name for i in step.graph.input] == ["x_t", "t", "alpha_bar_t", "alpha_bar_prev", "label", "guidance_scale", "eta", "noise"]
    assert [o.name for o in step.graph.output] == ["x_prev"] and old.manifest["parity"]["loop"]["passed"]
    ref, ort = gens
    with Generator.load(old, backend="onnxruntime") as g, Generator.load(old, backend="torch") as t:
        assert not g.sampler.has_solver
        for controls in ({"steps": 20, "guidance_scale": 3.0}, {"steps": 10, "sampler": "ddpm"}):
            new = ort.generate({"label": [2, 9]}, n=3, seed=4, **controls).data
            np.testing.assert_allclose(g.generate({"label": [2, 9]}, n=3, seed=4, **controls).data, new, rtol=0, atol=1e-6)
            np.testing.assert_allclose(t.generate({"label": [2, 9]}, n=3, seed=4, **controls).data,
                                       ref.generate({"label": [2, 9]}, n=3, seed=4, **controls).data, rtol=0, atol=1e-6)
        for gen in (g, t):
            with pytest.raises(ConditionError, match=r"Control --sampler \| got 'dpmpp-2m' \| expected ddim or ddpm for this bundle: "
                                                     r"its step graph was exported before DPM-Solver\+\+ .* \| fix: re-export it .*"
                                                     rf"genctl export {re.escape(str(old.path))}/source --out NEW_BUNDLE") as info:
                gen.generate({"label": 1}, n=1, seed=0, sampler="dpmpp-2m")
            assert "\n" not in str(info.value)


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.update(betas=s["betas"][:50]), r"got 50 betas but info.schedule.timesteps = 100"),
    (lambda s: s.update(betas=[b * 1.5 for b in s["betas"]]), r"got betas that differ from the 'linear' schedule"),
    (lambda s: s.update(betas=[]), r"got 0 betas \| expected info.schedule.betas"),
])
def test_bundle_with_a_mismatched_schedule_is_refused(bundle, copy_bundle, edit, match):
    copy = copy_bundle(bundle.path)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest["info"]["schedule"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=match):
        Generator.load(copy, backend="onnxruntime")


# ---------------------------------------------------------------------------------- eval hook

def test_guidance_sweep_classifies_every_class_at_every_scale(gens):
    _, ort = gens
    seen = []

    def classify(images: np.ndarray) -> np.ndarray:
        seen.append(images.shape)
        return np.repeat(np.arange(10), 2)  # a perfect "classifier" for rows in class order

    result = guidance_sweep(ort, [0.0, 1.0, 3.0], n_per_class=2, seed=0, classify=classify, steps=5)
    assert result == {0.0: 1.0, 1.0: 1.0, 3.0: 1.0} and seen == [(20, 1, 8, 8)] * 3


def test_cli_eval_sweeps_guidance_and_generate_writes_a_grid(bundle, tmp_path):
    import json

    from typer.testing import CliRunner

    from genctl.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["eval", str(bundle.path), "-n", "20", "--steps", "5", "--guidance-scales", "0,3",
                              "--json", str(tmp_path / "e.json"), "--plot", str(tmp_path / "e.png")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert set(report) >= {"guidance 0", "guidance 3", "evaluator_test_accuracy"}
    from PIL import Image

    with Image.open(tmp_path / "e.png") as img:  # the control-vs-guidance plot (its series: tests/test_plots.py)
        assert img.format == "PNG" and 400 <= img.width <= 3000 and 300 <= img.height <= 3000
    res = runner.invoke(app, ["generate", str(bundle.path), "--cond", "label=1,2", "-n", "3", "--steps", "5",
                              "--guidance-scale", "2", "--out", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output and (tmp_path / "g.png").is_file()
    res = runner.invoke(app, ["generate", str(bundle.path), "--steps", "0"])
    assert res.exit_code == 1 and "--steps" in res.output and "Traceback" not in res.output


def test_requests_batched_together_give_what_each_gives_alone(gens):
    """Labels, n, seeds, guidance scales and eta (ddim / ddpm) differ per request: one step call per
    step for the requests that share ``steps`` and the solver; each request's rows equal a lone run."""
    _, ort = gens
    asks = [({"label": 3}, 2, 1, {"steps": 8, "guidance_scale": 3.0}),
            ({"label": [0, 9]}, 1, 2, {"steps": 8, "guidance_scale": 1.0, "eta": 0.5}),
            ({"label": 5}, 3, 3, {"steps": 8, "sampler": "ddpm", "guidance_scale": 0.0}),
            ({"label": 5}, 1, 3, {"steps": 4}),  # other steps: its own loop
            ({"label": [1, 6]}, 2, 5, {"steps": 8, "sampler": "dpmpp-2m", "guidance_scale": 3.0}),  # other solver: its own loop
            ({"label": 8}, 1, 6, {"steps": 8, "sampler": "dpmpp-2m", "guidance_scale": 1.0})]
    reqs = [ort.request(c, n, seed, **k) for c, n, seed, k in asks]
    assert len({ort.sampler.batch_key(r) for r in reqs}) == 3
    for (c, n, seed, k), got in zip(asks, ort.generate_many(reqs)):
        alone = ort.generate(c, n=n, seed=seed, **k)
        assert got.meta["guidance_scale"] == alone.meta["guidance_scale"] and got.meta["eta"] == alone.meta["eta"]
        np.testing.assert_allclose(got.data, alone.data, rtol=0, atol=1e-5)
