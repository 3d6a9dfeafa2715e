"""cflow end to end on digits: exact log-likelihood graph, invertibility, parity, bits/dim."""
import numpy as np
import pytest
import torch

import genctl
from genctl.checkpoint import load_checkpoint
from genctl.data import get_dataset
from genctl.eval.likelihood import bits_per_dim
from genctl.export.parity import scaled_error
from genctl.families import get_family
from genctl.families.cflow import unsqueeze

TINY = {"scales": 1, "steps": 2, "hidden": 16, "label_dim": 4}


@pytest.fixture(scope="module")
def cflow_bundle(make_bundle):
    trained = make_bundle("cflow", epochs=3, **TINY)
    assert np.isfinite(trained.config["train"]["test_bits_per_dim"])
    return trained.path


@pytest.fixture(scope="module")
def gens(cflow_bundle):
    with genctl.load(cflow_bundle, backend="torch") as t, genctl.load(cflow_bundle, backend="onnxruntime") as o:
        yield t, o


@pytest.fixture(scope="module")
def model(cflow_bundle):
    config, state = load_checkpoint(cflow_bundle / "source")
    m = get_family("cflow").build_model(config)
    m.load_state_dict(state)
    return m.eval()


def test_manifest_has_sample_and_log_prob_graphs(gens):
    bundle = gens[1].bundle
    assert bundle.family == "cflow" and sorted(bundle.graphs) == ["log_prob", "sample"]
    sample, log_prob = bundle.graphs["sample"], bundle.graphs["log_prob"]
    assert [(t.name, t.shape, t.role) for t in sample.inputs] == [
        ("noise", ["batch", 1, 8, 8], "noise"), ("label", ["batch"], "condition")]
    assert [(t.name, t.shape, t.role) for t in log_prob.inputs] == [
        ("image", ["batch", 1, 8, 8], "data"), ("label", ["batch"], "condition")]
    assert [(t.name, t.shape) for t in log_prob.outputs] == [("log_prob", ["batch"])]
    assert bundle.sampler["kind"] == "oneshot" and bundle.sampler["graph"] == "sample"
    assert bundle.info["output"]["levels"] == 17
    assert all(r["passed"] for r in bundle.manifest["parity"]["graphs"].values())


def test_same_seed_same_samples_on_torch_and_onnxruntime(gens):
    t, o = gens
    a = t.generate({"label": [2, 5]}, n=6, seed=7)
    b = o.generate({"label": [2, 5]}, n=6, seed=7)
    assert a.data.shape == (12, 1, 8, 8)
    assert scaled_error(b.data, a.data) <= 1e-4
    assert a.data.min() >= -1.0 and a.data.max() <= 1.0


def test_labels_change_the_samples(gens):
    _, o = gens
    base = o.generate({"label": 3}, n=4, seed=0).data
    assert not np.allclose(base, o.generate({"label": 8}, n=4, seed=0).data, atol=1e-3)


def test_log_prob_graph_is_finite_and_matches_torch(gens):
    t, o = gens
    ds = get_dataset("digits")
    feeds = {"image": ds.x_test[:50], "label": ds.y_test[:50]}
    ref, got = t.backend.run("log_prob", feeds)["log_prob"], o.backend.run("log_prob", feeds)["log_prob"]
    assert got.shape == (50,) and np.all(np.isfinite(got))
    assert scaled_error(got, ref) <= 1e-4


def test_flow_is_invertible(model):
    """sample() inverts log_prob()'s encoder: real digit -> latent -> noise -> the same digit."""
    ds = get_dataset("digits")
    image, label = torch.from_numpy(ds.x_test[:6]) * 0.98, torch.from_numpy(ds.y_test[:6])  # inside (-1, 1)
    with torch.no_grad():
        z, _ = model.encode(image, label)  # (6, 4, 4, 4) after one squeeze
        mu, logs = model._prior(label, z)
        noise = unsqueeze((z - mu) * torch.exp(-logs))  # (6, 1, 8, 8)
        back = model.sample(noise, label)
    np.testing.assert_allclose(back.numpy(), image.numpy(), atol=1e-4)


def test_bits_per_dim_prefers_real_digits_to_noise(gens):
    t, o = gens
    ds = get_dataset("digits")
    noise = np.random.default_rng(0).uniform(-1, 1, ds.x_test.shape).astype(np.float32)
    real = bits_per_dim(o, o.bundle, ds.x_test, ds.y_test)
    assert np.isfinite(real) and real < bits_per_dim(o, o.bundle, noise, ds.y_test)
    assert real < np.log2(17)  # beats the uniform model on 17 levels
    assert abs(real - bits_per_dim(t.backend, t.bundle, ds.x_test, ds.y_test)) < 1e-3  # a Backend works too


def test_bits_per_dim_checks_its_inputs(gens):
    o = gens[1]
    with pytest.raises(genctl.GenctlError, match=r"bits_per_dim images/labels \| got shapes \(3, 1, 8, 8\) and \(2,\)"):
        bits_per_dim(o, o.bundle, np.zeros((3, 1, 8, 8)), np.zeros(2))


def test_image_size_must_fit_the_scales():
    config = get_family("cflow").make_config({"name": "x", "shape": [1, 6, 6], "label_names": ["a", "b"]}, {"scales": 2})
    with pytest.raises(genctl.GenctlError, match=r"got H, W = 6, 6 \| expected H and W divisible by 4"):
        get_family("cflow").build_model(config)
